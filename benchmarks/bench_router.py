"""Router accuracy on the held-out set `corpora/eval/router.jsonl`, printed as one JSON line.

Baselines measured in the same run: the majority class, and kNN over the seeds alone (no lore signal, no cues),
so the figure says what the lore match and the cues add.

    .venv/bin/python benchmarks/bench_router.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.config import Cast  # noqa: E402
from app.evaluation.measures import retrieval_report, router_report  # noqa: E402
from app.router import LABELS, Router, load_seeds  # noqa: E402
from retrieval.embeddings import SentenceTransformerEmbedder  # noqa: E402
from retrieval.fileio import read_jsonl  # noqa: E402
from retrieval.index import LoreIndex  # noqa: E402
from retrieval.rebuild import rebuild_index  # noqa: E402


def main() -> None:
    emb = SentenceTransformerEmbedder("builtin:all-minilm-l6-v2")
    test = REPO / "corpora" / "eval" / "router.jsonl"
    items = [obj for _, obj in read_jsonl(test)]
    with tempfile.TemporaryDirectory() as tmp:
        rebuild_index(REPO / "corpora" / "lore", Path(tmp) / "index", emb)
        index = LoreIndex.open(Path(tmp) / "index", emb)
        router = Router(emb, load_seeds(REPO / "corpora" / "router" / "seeds.jsonl"))
        report = router_report(router, index, test)
        vecs = emb.encode([it["text"] for it in items])
        knn_only = sum(LABELS[int(router._knn(v).argmax())] == it["label"] for it, v in zip(items, vecs)) / len(items)
        retrieval = retrieval_report(index, emb, [REPO / "corpora" / "eval" / "facts.jsonl"],
                                     Cast.load(REPO / "configs" / "npcs.yaml"))
    labels = [it["label"] for it in items]
    majority = max(labels.count(lbl) for lbl in LABELS) / len(labels)
    print(json.dumps({"benchmark": "router_heldout", "n": report["n"], "accuracy": report["accuracy"],
                      "baseline_majority": round(majority, 4), "baseline_seed_knn_only": round(knn_only, 4),
                      "recall": report["recall"],
                      "fact_retrieval_in_npc_scope": retrieval}))


if __name__ == "__main__":
    main()
