"""Small talk as a player meets it, before and after the decoding rules of issue 19, in one run per world.

    .venv/bin/python benchmarks/small_talk.py [--config configs/eterna.yaml ...] [--limit N] [--fluency]
    .venv/bin/python benchmarks/small_talk.py --config C --bare --persona-adapter adapters/persona \
        --router-style --variants after --fluency

Variants (same engine, same lines, greedy): `before` (no n-gram ban, no sentence limit, invented sentences said:
the decoding before 2026-12-02), `after` (the defaults: `generation.no_repeat_ngram` 3, `generation.max_sentences`
3, stop at the closing marker, end before an invented sentence) and `invented-said` (the defaults with
`generation.stop_invented: false`), each with the cast's adapters and with the base model alone (`--no-adapters`
in the CLI). Lines: the world's `eval/style_prompts.jsonl`, plus with `--router-style` its `eval/router.jsonl`
lines labelled `style`.

`--bare` runs the world as a new team has it: the same world, lore and index, and a cast of persona and style
text only (no style sets, markers, adapters or models), written under a temporary folder. `--persona-adapter`
serves that adapter (`models.persona_adapter`) for every character without its own; the rows `adapters: true`
are then the persona adapter's and `adapters: false` the bare base model's, on the same lines and decoding.
Prints one JSON object per (world, variant, adapters) with `eterna eval quality`'s summary. Development worlds
only: never pass the sealed config while choosing settings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BARE_KEYS = ("id", "name", "role", "persona", "style", "knows")  # what a new team's cast file holds


def bare_config(cfg, folder: Path):
    """`cfg` as a new team has it: its cast reduced to BARE_KEYS, no style, preference or seed data."""
    import yaml

    from app.config import Cast

    cast = Cast.load(cfg.paths.npcs, cfg.world)
    npcs = folder / "npcs.bare.yaml"
    npcs.write_text(yaml.safe_dump({"npcs": [n.model_dump(mode="json", include=set(BARE_KEYS)) for n in cast.npcs]},
                                   allow_unicode=True, sort_keys=False), encoding="utf-8")
    paths = cfg.paths.model_copy(update={"npcs": npcs, "style": None, "preferences": None, "router_seeds": None,
                                         "sessions": None, "adapters": folder / "adapters"})
    models = cfg.models.model_copy(update={"persona_adapter": None})
    return cfg.model_copy(update={"paths": paths, "models": models})


def small_talk_lines(cfg, router_style: bool) -> list[dict]:
    from app.evaluation.replies import load_lines
    from retrieval.fileio import read_jsonl

    lines = load_lines(cfg.data_path("eval") / "style_prompts.jsonl")
    router = cfg.data_path("eval") / "router.jsonl"
    if router_style and router.is_file():
        seen = {it["text"].strip().lower() for it in lines}
        for n, obj in read_jsonl(router, ("npc", "text", "label")):
            if obj["label"] == "style" and obj["text"].strip().lower() not in seen:
                seen.add(obj["text"].strip().lower())
                lines.append({**obj, "line": f"router:{n}"})
    return lines


def main() -> None:
    from app.config import EternaConfig
    from app.dialogue import DialogueEngine
    from app.evaluation.replies import quality_report

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", nargs="+", default=[str(REPO / "configs" / "eterna.yaml"),
                                                      str(REPO / "configs" / "kestrel.yaml")])
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--fluency", action="store_true")
    ap.add_argument("--items", action="store_true", help="print every reply too")
    ap.add_argument("--bare", action="store_true", help="the cast's persona and style text only (see above)")
    ap.add_argument("--persona-adapter", type=Path, help="serve this adapter for characters without their own")
    ap.add_argument("--router-style", action="store_true", help="add the router set's `style` lines")
    ap.add_argument("--variants", nargs="+", choices=("before", "after", "invented-said"), default=["before", "after"])
    ap.add_argument("--speakers", nargs="+", choices=("adapters", "base"), default=["adapters", "base"],
                    help="the rows to run: with the adapters, with the base model alone")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="small-talk-")
    for path in args.config:
        cfg = EternaConfig.load(Path(path))
        lines = small_talk_lines(cfg, args.router_style)
        lines = lines[: args.limit] if args.limit else lines
        if args.bare:
            cfg = bare_config(cfg, Path(tmp.name))
        if args.persona_adapter is not None:
            cfg = cfg.model_copy(update={"models": cfg.models.model_copy(
                update={"persona_adapter": args.persona_adapter.resolve()})})
            cfg.check_persona_adapter("--persona-adapter")
        engine = DialogueEngine.from_settings(cfg)
        has_adapters = bool(engine.adapter_names)
        base_gen = engine.config.generation
        variants = {"before": base_gen.model_copy(update={"no_repeat_ngram": 0, "max_sentences": None,
                                                          "stop_invented": False}),
                    "after": base_gen, "invented-said": base_gen.model_copy(update={"stop_invented": False})}
        for label in args.variants:
            engine.config = engine.config.model_copy(update={"generation": variants[label]})
            for adapters in [a for a, name in ((True, "adapters"), (False, "base"))
                             if name in args.speakers and (has_adapters or not a)]:
                r = quality_report(engine, lines, use_adapter=adapters, with_fluency=args.fluency,
                                   keep_items=args.items)
                print(json.dumps({"world": cfg.world.name, "variant": label, "adapters": adapters,
                                  "bare": args.bare, "persona_adapter": str(args.persona_adapter or "") or None,
                                  "lines": len(lines), **r}, ensure_ascii=False), flush=True)
        del engine
    tmp.cleanup()


if __name__ == "__main__":
    main()
