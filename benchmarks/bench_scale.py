"""Index scale: build time, memory and query latency (p50/p99, query embedding excluded) of dense, BM25 and hybrid
search on a synthetic corpus, with scope filters on, and the recall@10 of the approximate index against exact search
measured in the same run. One JSON line per figure.

    .venv/bin/python benchmarks/bench_scale.py                 # 100k chunks: exact dense (the default index kind)
    .venv/bin/python benchmarks/bench_scale.py --n 1000000     # 1M chunks: IVF (above retrieval.index.exact_max)

Synthetic, seeded: clustered unit vectors (384-d, like MiniLM) and Zipf-distributed words, so IVF and BM25 face
realistic structure; NPC scopes, kinds and chapters give the filters something to do.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from retrieval.index import IndexSpec, LoreIndex, build_faiss  # noqa: E402
from retrieval.retrievers.hybrid import HybridRetriever  # noqa: E402
from retrieval.lexical import LexicalIndex  # noqa: E402
from retrieval.types import Chunk, Scope  # noqa: E402

NPCS = ["n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7"]
KINDS = ["place", "person", "event", "item"]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def corpus(n: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(16, n // 200), dim)).astype(np.float32)  # (C, dim) topics
    topic = rng.integers(0, len(centers), n)
    vecs = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 100_000):  # (N, dim) = topic centre + noise, normalised; in slices to bound memory
        v = centers[topic[s:s + 100_000]] + 0.8 * rng.standard_normal((min(100_000, n - s), dim)).astype(np.float32)
        vecs[s:s + len(v)] = v / np.linalg.norm(v, axis=1, keepdims=True)
    vocab = np.array([f"w{i}" for i in range(50_000)])
    words = vocab[np.minimum(rng.zipf(1.15, (n, 40)) - 1, len(vocab) - 1)]  # (N, 40)
    texts = [" ".join(row) for row in words]
    chunks = [Chunk(id=f"d{i}#0", doc=f"d{i}", title=f"d{i}", kind=KINDS[i % 4],
                    npc_scope=(NPCS[i % 8],) if i % 10 == 0 else None, chapter=1 + i % 6, heading="",
                    text="", hash=str(i)) for i in range(n)]
    return chunks, vecs, texts, rng


def timed(fn, queries) -> dict:
    lat = []
    for q in queries:
        t0 = time.perf_counter()
        fn(*q)
        lat.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": round(float(np.percentile(lat, 50)), 3), "p99_ms": round(float(np.percentile(lat, 99)), 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--exact-max", type=int, default=IndexSpec().exact_max, help="as retrieval.index.exact_max")
    ap.add_argument("--factory", default=IndexSpec().factory)
    ap.add_argument("--nprobe", type=int, default=IndexSpec().nprobe, help="default: nlist / 32, at least 16")
    ap.add_argument("--sweep", default="", help="IVF: also measure dense latency and recall@10 at these nprobe "
                                                "values, comma-separated (e.g. 16,64,128)")
    args = ap.parse_args()
    import faiss

    faiss.omp_set_num_threads(max(1, len(__import__("os").sched_getaffinity(0))))
    rss0 = rss_mb()
    t0 = time.perf_counter()
    chunks, vecs, texts, rng = corpus(args.n, args.dim)
    gen_s = time.perf_counter() - t0
    spec = IndexSpec(exact_max=args.exact_max, factory=args.factory, nprobe=args.nprobe)
    t0 = time.perf_counter()
    index, info = build_faiss(vecs, spec)
    dense_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    lexical = LexicalIndex.build(texts)
    bm25_s = time.perf_counter() - t0
    lore = LoreIndex("/synthetic", {"faiss": info}, chunks, index, lexical, vecs)
    hybrid = HybridRetriever()
    print(json.dumps({"figure": "build", "chunks": args.n, "index": info["factory"], "dense_build_s": round(dense_s, 1),
                      "bm25_build_s": round(bm25_s, 1), "synthetic_data_s": round(gen_s, 1),
                      "peak_rss_mb": round(rss_mb(), 0), "rss_growth_mb": round(rss_mb() - rss0, 0)}), flush=True)

    picks = rng.integers(0, args.n, args.queries)
    qv = vecs[picks] + 0.3 * rng.standard_normal((args.queries, args.dim)).astype(np.float32)  # near a chunk
    qv /= np.linalg.norm(qv, axis=1, keepdims=True)
    qt = [" ".join(texts[i].split()[:6]) for i in picks]
    scopes = [Scope(npc=NPCS[i % 8], kinds=frozenset(KINDS[: 1 + i % 4]), chapter=1 + i % 6)
              for i in range(args.queries)]
    for s in set(scopes):  # the filter bitmaps are built once per scope (NPC x chapter), as in a running game
        lore.allowed_mask(s)
    for filtered in (False, True):
        sc = scopes if filtered else [None] * args.queries
        row = {"figure": "query_latency", "chunks": args.n, "index": info["factory"], "filters": filtered}
        row["dense"] = timed(lambda v, s: lore.search_vector(v, 10, s), list(zip(qv, sc)))
        row["bm25"] = timed(lambda t, s: lore.search_lexical(t, 10, s), list(zip(qt, sc)))
        row["hybrid"] = timed(lambda t, v, s: hybrid.search(lore, t, v, 10, s), list(zip(qt, qv, sc)))
        row["goal_p99_ms"] = 20
        print(json.dumps(row), flush=True)
    if lore.exact:
        return

    def recall(filtered: bool) -> float:  # recall@10 of the approximate index against exact search
        rec = []
        for v, s in zip(qv[:100], scopes[:100] if filtered else [None] * 100):
            got = {h.chunk.id for h in lore.search_vector(v, 10, s)}
            mask = lore.allowed_mask(s)
            rows = np.flatnonzero(mask) if mask is not None else np.arange(args.n)
            best = rows[np.argsort(-(vecs[rows] @ v))[:10]]
            rec.append(len(got & {chunks[i].id for i in best}) / len(best))
        return round(float(np.mean(rec)), 4)

    for filtered in (False, True):
        print(json.dumps({"figure": "ann_recall@10_vs_exact", "chunks": args.n, "index": info["factory"],
                          "nprobe": lore.manifest["faiss"]["search"].get("nprobe"), "filters": filtered,
                          "recall@10": recall(filtered)}), flush=True)
    search = lore.manifest["faiss"].setdefault("search", {})
    for nprobe in [int(x) for x in args.sweep.split(",") if x.strip()]:
        search["nprobe"] = nprobe
        row = {"figure": "nprobe_sweep", "chunks": args.n, "index": info["factory"], "nprobe": nprobe}
        for filtered in (False, True):
            sc = scopes if filtered else [None] * args.queries
            tag = "filtered" if filtered else "unfiltered"
            row[f"dense_{tag}"] = timed(lambda v, s: lore.search_vector(v, 10, s), list(zip(qv, sc)))
            row[f"hybrid_{tag}"] = timed(lambda t, v, s: hybrid.search(lore, t, v, 10, s), list(zip(qt, qv, sc)))
            row[f"recall@10_{tag}"] = recall(filtered)
        print(json.dumps(row), flush=True)

if __name__ == "__main__":
    main()
