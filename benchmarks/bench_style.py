"""Does the adapter carry the voice? Voice-marker adherence with and without a character's LoRA, one JSON line.

Takes the character's shipped adapter (its `adapter:` in configs/npcs.yaml), or --adapter DIR, or trains one now
with the default recipe (--train), then answers held-out prompts (`corpora/library/eval/style_prompts.jsonl`: the
character's own and the other characters') through `DialogueEngine.say` twice: with the adapter, and with the same
engine's base model and persona prompt (the baseline, same run). A reply adheres when it opens and closes with the
character's markers (configs/npcs.yaml).

    .venv/bin/python benchmarks/bench_style.py [--npc warden] [--adapter DIR | --train]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.config import Cast, EternaConfig  # noqa: E402
from app.dialogue import DialogueEngine  # noqa: E402
from app.prompt import system_prompt  # noqa: E402
from retrieval.fileio import read_jsonl  # noqa: E402
from tuning.base import prepare_model  # noqa: E402
from tuning.sft import SFTRecipe, train_sft  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--npc", default="warden")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--adapter", help="an adapter already trained for --npc (default: the shipped one)")
    which.add_argument("--train", action="store_true", help="train a fresh adapter with the default recipe")
    args = ap.parse_args()
    cfg = EternaConfig.load(REPO / "configs" / "eterna.yaml")
    cfg = cfg.model_copy(update={"paths": cfg.paths.model_copy(update={"sessions": None}),
                                 "memory": cfg.memory.model_copy(update={"turns": 0})})
    cast = Cast.load(cfg.paths.npcs, cfg.world)
    npc = cast.get(args.npc)
    with tempfile.TemporaryDirectory() as tmp:
        adapter, manifest = Path(args.adapter) if args.adapter else npc.adapter, None
        if args.train or adapter is None:
            adapter = Path(tmp) / "adapter"
            base = prepare_model(cfg.models.llm, cfg.models.cache_dir)
            manifest = train_sft(base, cfg.paths.style / f"{npc.id}.jsonl", adapter, SFTRecipe(),
                                 system=system_prompt(npc, cfg.world, cfg.prompts), npc=npc.id,
                                 base_spec=cfg.models.llm)
        npcs = Path(tmp) / "npcs.yaml"
        tuned = cast.model_copy(update={"npcs": [n.model_copy(update={"adapter": adapter}) if n.id == npc.id else n
                                                 for n in cast.npcs]})
        npcs.write_text(json.dumps(tuned.model_dump(mode="json")), encoding="utf-8")  # JSON is YAML
        engine = DialogueEngine.from_settings(cfg, npcs=npcs)
        prompts = [p for _, p in read_jsonl(cfg.paths.eval / "style_prompts.jsonl")]
        own = [p["text"] for p in prompts if p["npc"] == npc.id]
        other = [p["text"] for p in prompts if p["npc"] != npc.id][::2]
        result = {"benchmark": "voice_adherence", "npc": npc.id, "adapter": str(adapter) if manifest is None
                  else "trained now", "prompts": len(own) + len(other)}
        for name, use in (("baseline_persona_prompt", False), ("eterna_adapter", True)):
            hits = [npc.markers.match(engine.say(npc.id, t, session=name, use_adapter=use).text)
                    for t in own + other]
            result[name] = round(sum(hits) / len(hits), 3)
        if manifest:
            result["train"] = {k: manifest["metrics"][k] for k in ("steps", "seconds", "first_loss", "last_loss")}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
