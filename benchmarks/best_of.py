"""Best-of-n small talk (issue 19, item 4): each metric for the first candidate (what n = 1 says) and for the chosen
one, with the n-gram ban on and off, in one run per world.

    .venv/bin/python benchmarks/best_of.py [--config configs/eterna.yaml ...] [--n 3] [--limit N] [--fluency]
        [--no-adapters] [--items]

Lines: the world's `eval/style_prompts.jsonl`, routed as a player's (lines routed to facts are extracted, not
generated, and are left out of the figures). The first candidate decodes as configured (greedy), so its row is the
n = 1 reply of the same engine; the chosen one is what best-of-n shows. Fluency (the base model's mean token
log-probability of the first 16 tokens) is not a scorer feature, so it is the independent check. Prints one JSON
object per (world, ban) with both summaries, the share of turns where the choice differs, and the p50 turn time.
Development worlds only: never pass the sealed config while choosing n or the weights.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    import numpy as np

    from app.bestof import BestOfConfig
    from app.config import EternaConfig
    from app.dialogue import DialogueEngine
    from app.evaluation.quality import summarise
    from app.evaluation.replies import fluency_of, load_lines, score_reply

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", nargs="+", default=[str(REPO / "configs" / "eterna.yaml"),
                                                      str(REPO / "configs" / "kestrel.yaml")])
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--fluency", action="store_true")
    ap.add_argument("--no-adapters", action="store_true")
    ap.add_argument("--items", action="store_true", help="print every pair of replies too")
    args = ap.parse_args()
    keys = ("words", "repeats", "clean", "breaks", "invented", "signature", "in_voice", "fluency")
    for path in args.config:
        cfg = EternaConfig.load(Path(path))
        lines = load_lines(cfg.data_path("eval") / "style_prompts.jsonl")
        lines = lines[: args.limit] if args.limit else lines
        engine = DialogueEngine.from_settings(cfg)
        gen = engine.config.generation
        for ban in (gen.no_repeat_ngram, 0):
            g = gen.model_copy(update={"no_repeat_ngram": ban, "best_of": BestOfConfig(
                **{**gen.best_of.model_dump(), "n": args.n})})
            variant = engine.variant(config=engine.config.model_copy(update={"generation": g}))
            run, first, chosen, ms, items = uuid.uuid4().hex[:8], [], [], [], []
            for i, it in enumerate(lines):
                spec = variant.cast.get(it["npc"])
                reply = variant.say(spec.id, it["text"], session=f"bestof-{run}-{i}", remember=False,
                                    use_adapter=not args.no_adapters)
                report = reply.context.get("best_of")
                if not report:
                    continue
                text0 = report["candidates"][0]["text"]
                first.append(score_reply(variant, spec, it["text"], text0, text0) | {"reply": text0})
                chosen.append(score_reply(variant, spec, it["text"], reply.text, reply.text) | {"reply": reply.text})
                ms.append(reply.timings["total_ms"])
                items.append({"npc": spec.id, "text": it["text"], "first": text0, "chosen": reply.text})
            if args.fluency:
                for rows in (first, chosen):
                    for r, f in zip(rows, fluency_of([r["reply"] for r in rows], variant), strict=True):
                        r["fluency"] = f
            out = {"world": cfg.world.name, "n": args.n, "no_repeat_ngram": ban, "adapters": not args.no_adapters,
                   "turns": len(first), "changed": round(float(np.mean([a["first"] != a["chosen"] for a in items])), 3)
                   if items else None, "p50_ms": float(np.median(ms)) if ms else None,
                   "first": summarise([{k: r.get(k) for k in keys} for r in first]),
                   "chosen": summarise([{k: r.get(k) for k in keys} for r in chosen])}
            if args.items:
                out["items"] = items
            print(json.dumps(out, ensure_ascii=False), flush=True)
        del engine


if __name__ == "__main__":
    main()
