"""Small talk as a player meets it, before and after the decoding rules of issue 19, in one run per world.

    .venv/bin/python benchmarks/small_talk.py [--config configs/eterna.yaml ...] [--limit N] [--fluency]

Variants (same engine, same lines, greedy): `before` (no n-gram ban, no sentence limit: the decoding before
2026-12-02) and `after` (the defaults: `generation.no_repeat_ngram` 3, `generation.max_sentences` 3, stop at the
closing marker), each with the cast's adapters and with the base model alone (`--no-adapters` in the CLI). Lines:
the world's `eval/style_prompts.jsonl`. Prints one JSON object per (world, variant) with `eterna eval quality`'s
summary. Development worlds only: never pass the sealed config while choosing settings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    from app.config import EternaConfig
    from app.dialogue import DialogueEngine
    from app.evaluation.replies import load_lines, quality_report

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", nargs="+", default=[str(REPO / "configs" / "eterna.yaml"),
                                                      str(REPO / "configs" / "kestrel.yaml")])
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--fluency", action="store_true")
    ap.add_argument("--items", action="store_true", help="print every reply too")
    args = ap.parse_args()
    for path in args.config:
        cfg = EternaConfig.load(Path(path))
        lines = load_lines(cfg.data_path("eval") / "style_prompts.jsonl")
        lines = lines[: args.limit] if args.limit else lines
        engine = DialogueEngine.from_settings(cfg)
        has_adapters = any(n.adapter is not None for n in engine.cast.npcs)
        base_gen = engine.config.generation
        for label, gen in (("before", base_gen.model_copy(update={"no_repeat_ngram": 0, "max_sentences": None})),
                           ("after", base_gen)):
            engine.config = engine.config.model_copy(update={"generation": gen})
            for adapters in ((True, False) if has_adapters else (False,)):
                r = quality_report(engine, lines, use_adapter=adapters, with_fluency=args.fluency,
                                   keep_items=args.items)
                print(json.dumps({"world": cfg.world.name, "variant": label, "adapters": adapters, **r},
                                 ensure_ascii=False), flush=True)
        del engine


if __name__ == "__main__":
    main()
