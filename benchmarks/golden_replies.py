"""Golden replies: every development world's eval lines through the default engine, greedy, written to one JSON
file; `--compare OLD.json` says which replies changed. The proof that a structural change (issue 20's renovation:
the turn as a pipeline, seams, the CLI split) changes no behaviour: record before, refactor, record after, compare.

    .venv/bin/python benchmarks/golden_replies.py --out /tmp/before.json [--limit 40]
    (change the code)
    .venv/bin/python benchmarks/golden_replies.py --out /tmp/after.json --compare /tmp/before.json

Lines: each world's facts (question, chapter), style prompts and router lines, each in a fresh session, plus one
session per world that takes its lines in turn (memory in the prompt). Replies are compared byte for byte: text,
route, sources, grounding answer, adapter. Development worlds only (the sealed one is never used to tune, and a
golden set must not become a place to look at it). Exit 1 when replies differ. Writes only --out (and a
temporary index folder).
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

WORLDS = ("eterna.yaml", "kestrel.yaml")


def lines_of(cfg, limit: int) -> list[dict]:
    from retrieval.fileio import read_jsonl

    folder, out = cfg.data_path("eval"), []
    for name, text_key in (("facts", "question"), ("style_prompts", "text"), ("router", "text")):
        path = folder / f"{name}.jsonl"
        if path.is_file():
            rows = [obj for _, obj in read_jsonl(path)][:limit]
            out += [{"set": name, "npc": r.get("npc"), "text": r[text_key], "chapter": r.get("chapter", 1)}
                    for r in rows]
    return out


def record(limit: int) -> dict:
    from app.config import EternaConfig
    from app.dialogue import DialogueEngine
    from retrieval.embeddings import SentenceTransformerEmbedder
    from retrieval.rebuild import rebuild_index

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for world in WORLDS:
            shipped = EternaConfig.load(REPO / "configs" / world)
            cfg = shipped.model_copy(update={"paths": shipped.paths.model_copy(
                update={"index": Path(tmp) / world / "index", "sessions": None})})
            rebuild_index(cfg.paths.corpus, cfg.paths.index,
                          SentenceTransformerEmbedder(cfg.models.embedder, dtype=cfg.models.embedder_dtype),
                          kinds=cfg.world.kinds)
            engine = DialogueEngine.from_settings(cfg)
            default_npc = engine.cast.npcs[0].id
            rows = []
            for i, it in enumerate(lines_of(cfg, limit)):
                npc = it["npc"] or default_npc
                for session in (f"fresh-{i}", "one-long-session"):
                    r = engine.say(npc, it["text"], session=session, chapter=int(it["chapter"]))
                    rows.append({"set": it["set"], "npc": npc, "text": it["text"], "session": session,
                                 "reply": r.text, "route": r.route, "adapter": r.adapter,
                                 "answer": r.grounding.get("answer"), "sources": [s["chunk"] for s in r.sources]})
            out[world] = {"backend": engine.generator.name, "replies": rows}
            del engine
    return out


def compare(old: dict, new: dict) -> list[dict]:
    diffs = []
    for world, data in new.items():
        before = old.get(world, {}).get("replies", [])
        for i, row in enumerate(data["replies"]):
            if i >= len(before) or before[i] != row:
                diffs.append({"world": world, "i": i, "before": before[i] if i < len(before) else None, "after": row})
    return diffs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--compare", help="an earlier --out file: print the replies that differ, exit 1 if any")
    ap.add_argument("--limit", type=int, default=40, help="lines per eval file (default 40)")
    args = ap.parse_args()
    data = record(args.limit)
    Path(args.out).write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    n = sum(len(d["replies"]) for d in data.values())
    if not args.compare:
        print(json.dumps({"replies": n, "out": args.out}))
        return 0
    diffs = compare(json.loads(Path(args.compare).read_text(encoding="utf-8")), data)
    for d in diffs[:20]:
        print(json.dumps(d, ensure_ascii=False))
    print(json.dumps({"replies": n, "differ": len(diffs), "identical": not diffs}))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
