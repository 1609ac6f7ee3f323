"""Where the router sends small talk and fact questions, per world: one JSON line per world.

    .venv/bin/python benchmarks/router_small_talk.py [--config configs/outback.yaml ...]

A player's small talk (`eval/style_prompts.jsonl`) should reach small talk (`style`); a line routed `fact` or
`both` meets a fact turn's "I do not know" or an unrelated lore sentence. A fact question (`eval/facts*.jsonl` and
`eval/gated.jsonl`, whichever the world ships) should reach `fact` or `both`; one routed `style` is answered from
the persona alone. Each line is routed as in a turn: the world's router (trained on lines synthesised from its lore
and cast, never on these files), the lore-match feature from the router's own search. Reports, per set, how many
lines went to each label and the share routed as it should be. The index is built under a temporary folder.
Development worlds only while choosing anything: the sealed world is measured once, aggregate only.
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

from app.evaluation.facts import router_report  # noqa: E402
from app.router import LABELS  # noqa: E402
from benchmarks.bench_router import world_router  # noqa: E402
from retrieval.embeddings import SentenceTransformerEmbedder  # noqa: E402
from retrieval.fileio import read_jsonl  # noqa: E402

WANTED = {"small_talk": ("style",), "facts": ("fact", "both")}


def lines(folder: Path) -> dict[str, list[str]]:
    """The world's small-talk lines and fact questions, by kind."""
    out: dict[str, list[str]] = {"small_talk": [], "facts": []}
    style = folder / "style_prompts.jsonl"
    if style.is_file():
        out["small_talk"] = [obj["text"] for _, obj in read_jsonl(style, ("text",))]
    for path in sorted(folder.glob("facts*.jsonl")) + sorted(folder.glob("gated.jsonl")):
        out["facts"] += [obj["question"] for _, obj in read_jsonl(path, ("question",))]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", nargs="+", default=[str(REPO / "configs" / "eterna.yaml")])
    args = ap.parse_args()
    emb = SentenceTransformerEmbedder("builtin:all-minilm-l6-v2")
    for path in args.config:
        with tempfile.TemporaryDirectory() as tmp:
            cfg, _, index, router = world_router(Path(path), emb, Path(tmp))
            row = {"benchmark": "router_small_talk", "world": cfg.world.name, "config": Path(path).name}
            for kind, texts in lines(cfg.paths.eval).items():
                if not texts:
                    continue
                gold = WANTED[kind][0]
                report = router_report(router, index, [{"text": t, "label": gold} for t in texts], keep_errors=False)
                routed = report["confusion"][gold]
                row[kind] = {"n": len(texts), "routed": {lbl: routed[lbl] for lbl in LABELS if routed[lbl]},
                             "as_wanted": round(sum(routed[lbl] for lbl in WANTED[kind]) / len(texts), 4)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
