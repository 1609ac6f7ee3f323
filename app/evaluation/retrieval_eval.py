"""`eterna eval retrieval --beir DIR [--split test] [--mode MODE|all] [--k 100] [--json]`.

Scores a BEIR folder (`corpus.jsonl` or `corpus.jsonl.gz`, `queries.jsonl`, `qrels/<split>.tsv`) with the
trec_eval definitions: nDCG@10 (gain = relevance, discount log2(rank + 1)), recall@5 and @100 (relevant documents
retrieved / relevant documents), MRR@10. The corpus becomes an in-memory `LoreIndex`, one chunk per document
(title + text): exact inner product over the configured embedder's vectors, and BM25 (`retrieval.lexical`). Each
mode is a registered retriever (retrieval/retriever.py's MODES), the same search the engine runs, with `--k`
candidates per primitive and `--weight` on dense in a fusion. The primitives are cached per data set and embedder
under `models.cache_dir/beir/`, so a second run only embeds the queries.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from app.evaluation.measures import ndcg_at_10
from retrieval.errors import EternaError
from retrieval.fileio import read_jsonl
from retrieval.index import LoreIndex
from retrieval.retriever import MODES, Retriever, RetrieverSpec, make_retriever
from retrieval.retrievers.hybrid import HybridRetriever
from retrieval.types import Chunk


def read_beir(folder: Path, split: str, limit: int = 0) -> tuple[list[dict], dict[str, str], dict[str, dict[str, int]]]:
    """(corpus [{_id, title, text}], queries {id: text}, qrels {query id: {doc id: relevance}}) of a BEIR folder;
    `limit` keeps the first N judged queries of the split (the corpus stays whole)."""
    folder = Path(folder)
    corpus_path = next((folder / n for n in ("corpus.jsonl", "corpus.jsonl.gz") if (folder / n).is_file()), None)
    if corpus_path is None:
        raise EternaError(f"{folder}: no corpus.jsonl or corpus.jsonl.gz (a BEIR folder has corpus, queries.jsonl "
                          "and qrels/<split>.tsv)")
    corpus = [{"_id": str(d["_id"]), "title": d.get("title") or "", "text": d.get("text") or ""}
              for _, d in read_jsonl(corpus_path, ("_id",))]
    qpath = folder / "queries.jsonl"
    rpath = folder / "qrels" / f"{split}.tsv"
    for p in (qpath, rpath):
        if not p.is_file():
            raise EternaError(f"{p}: missing (split {split!r})")
    queries = {str(q["_id"]): q["text"] for _, q in read_jsonl(qpath, ("_id", "text"))}
    qrels: dict[str, dict[str, int]] = {}
    for n, line in enumerate(rpath.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split("\t")
        if n == 1 and not parts[-1].strip().lstrip("-").isdigit():
            continue  # header
        if len(parts) < 3:
            raise EternaError(f"{rpath}:{n}: expected query-id, corpus-id, score separated by tabs")
        qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    qrels = {q: r for q, r in qrels.items() if q in queries}
    if not qrels:
        raise EternaError(f"{rpath}: no judged query is in {qpath}")
    if limit:
        qrels = dict(list(qrels.items())[:limit])
    return corpus, queries, qrels


def _cache_dir(cache_root: Path, folder: Path, corpus: list[dict], embedder_name: str) -> Path:
    h = hashlib.sha256()
    h.update(embedder_name.encode())
    for d in corpus[:: max(1, len(corpus) // 1000)]:
        h.update(d["_id"].encode() + d["text"][:200].encode())
    h.update(str(len(corpus)).encode())
    return Path(cache_root) / f"{Path(folder).name}-{h.hexdigest()[:12]}"


def metrics(ranked: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict:
    rec5, rec100, mrr = [], [], []
    for q, rels in qrels.items():
        got = ranked.get(q, [])
        relevant = {d for d, r in rels.items() if r > 0}
        if not relevant:
            continue
        rec5.append(len(relevant & set(got[:5])) / len(relevant))
        rec100.append(len(relevant & set(got[:100])) / len(relevant))
        first = next((i for i, d in enumerate(got[:10]) if d in relevant), None)
        mrr.append(1.0 / (first + 1) if first is not None else 0.0)
    return {"ndcg@10": round(ndcg_at_10(ranked, qrels), 4), "recall@5": round(float(np.mean(rec5)), 4),
            "recall@100": round(float(np.mean(rec100)), 4), "mrr@10": round(float(np.mean(mrr)), 4)}


def _cached_vectors(path: Path, texts: list[str], embedder, dtype) -> tuple[np.ndarray, float | None]:
    """The embedder's vectors of `texts` as `dtype`, from `path` when it holds one per text, else embedded and
    saved there (write, then rename); (vectors, seconds spent embedding, None when cached)."""
    if path.is_file():
        vectors = np.load(path)
        if vectors.shape[0] == len(texts):
            return vectors, None
    t0 = time.perf_counter()
    vectors = np.asarray(embedder.encode(texts), dtype=dtype)
    tmp = path.with_name(f".{path.name}")
    np.save(tmp, vectors)
    tmp.replace(path)
    return vectors, round(time.perf_counter() - t0, 1)


def beir_index(folder: Path, corpus: list[dict], embedder, embedder_name: str, cache_root: Path,
               uses: set[str], sentences: bool = False) -> tuple[LoreIndex, dict, Path]:
    """The corpus as an in-memory index, one chunk per document (title + text), with the primitives in `uses`
    ("dense": the embedder's vectors, "bm25") and, with `sentences` and dense, one float16 vector per sentence of
    each document (`sentence_texts`, as a generation stores them), each cached under `cache_root` on first use;
    (index, seconds spent building each, the cache folder)."""
    from retrieval.index import sentence_texts
    from retrieval.lexical import LexicalIndex

    texts = [f"{d['title']} {d['text']}".strip() for d in corpus]
    cache = _cache_dir(cache_root, folder, corpus, embedder_name)
    cache.mkdir(parents=True, exist_ok=True)
    chunks = [Chunk(id=d["_id"], doc=d["_id"], title=d["title"], kind="document", npc_scope=None, chapter=1,
                    heading="", text=d["text"], hash="") for d in corpus]
    built = {}
    vectors = lexical = sentence_index = None
    if "dense" in uses:
        vectors, seconds = _cached_vectors(cache / "vectors.npy", texts, embedder, np.float32)
        if seconds is not None:
            built["dense_s"] = seconds
        if sentences:
            stexts, rows = sentence_texts(chunks)
            svecs, seconds = _cached_vectors(cache / "sentences.npy", stexts, embedder, np.float16)
            if seconds is not None:
                built["sentences_s"] = seconds
            sentence_index = (svecs, np.asarray(rows, dtype=np.int32))
    if "bm25" in uses:
        lpath = cache / "bm25"
        if (lpath / "eterna_lexical.json").is_file():
            lexical = LexicalIndex.load(lpath)
        else:
            t0 = time.perf_counter()
            lexical = LexicalIndex.build(texts)
            lexical.save(lpath)
            built["bm25_s"] = round(time.perf_counter() - t0, 1)
    return LoreIndex.in_memory(str(cache), chunks, vectors, lexical, sentence_index), built, cache


def beir_retriever(mode: str, k: int, weight: float, sentence_weight: float = 0.0) -> Retriever:
    """A registered retrieval mode as the evaluation runs it: `weight` on dense in a fusion, `k` candidates,
    `sentence_weight` on a document's best sentence in dense search."""
    MODES.lookup(mode, "--mode: ")
    return make_retriever(RetrieverSpec(mode=mode, hybrid_weight=weight, candidates=k,
                                        sentence_weight=sentence_weight))


def needs_embedder(modes: list[str]) -> bool:
    """Whether any of these modes searches vectors (a BM25-only run embeds nothing)."""
    return any("dense" in beir_retriever(m, 1, 0.5).uses for m in modes)


def evaluate_beir(folder: Path, embedder, embedder_name: str, cache_root: Path, *, split: str = "test",
                  mode: str = "hybrid", k: int = 100, weight: float = 0.5, limit: int | None = None,
                  sentence_weight: float = 0.0) -> dict:
    """One registered retriever (retrieval.retriever.MODES) over a BEIR folder: the same search the engine runs
    (with `sentence_weight`, the engine's `retrieval.sentence_weight`, a document also ranks by its best sentence)."""
    retriever = beir_retriever(mode, k, weight, sentence_weight)
    corpus, queries, qrels = read_beir(folder, split, limit or 0)
    index, built, cache = beir_index(folder, corpus, embedder, embedder_name, cache_root, set(retriever.uses),
                                     sentences=bool(sentence_weight))
    qids = list(qrels)
    t0 = time.perf_counter()
    qvecs = np.asarray(embedder.encode([queries[q] for q in qids]), dtype=np.float32) \
        if index.vectors is not None else [None] * len(qids)
    ranked = {q: [h.chunk.doc for h in retriever.search(index, queries[q], qvecs[n], k)] for n, q in enumerate(qids)}
    ms = (time.perf_counter() - t0) * 1000 / max(1, len(qids))
    return {**metrics(ranked, qrels), "queries": len(qids), "docs": len(corpus), "ms_per_query": round(ms, 2),
            "mode": mode, "split": split, "weight": getattr(retriever, "weight", None),
            "sentence_weight": sentence_weight if "dense" in retriever.uses else None, "built": built,
            "cache": str(cache)}


def tune_weight(folder: Path, embedder, embedder_name: str, cache_root: Path, *, split: str = "train",
                k: int = 100, grid: tuple[float, ...] = tuple(round(w / 10, 1) for w in range(11)),
                sentence_weight: float = 0.0) -> dict:
    """The hybrid weight with the best nDCG@10 on `split` (a train or dev split, never the one reported): the hybrid
    retriever's dense and BM25 candidates are searched once per query, then fused at each weight of the grid.
    Builds the cached indexes on first use, like evaluate_beir."""
    hybrid = HybridRetriever(candidates=k, sentence_weight=sentence_weight)
    corpus, queries, qrels = read_beir(folder, split)
    index, _, _ = beir_index(folder, corpus, embedder, embedder_name, cache_root, set(hybrid.uses),
                             sentences=bool(sentence_weight))
    qids = list(qrels)
    qvecs = np.asarray(embedder.encode([queries[q] for q in qids]), dtype=np.float32)  # (Q, dim)
    runs = [(q, qvecs[n], *hybrid.candidates_of(index, queries[q], qvecs[n], k)) for n, q in enumerate(qids)]
    scores = {w: metrics({q: [h.chunk.doc for h in hybrid.fused(index, v, dn, lx, k, w)] for q, v, dn, lx in runs},
                         qrels)["ndcg@10"] for w in grid}
    best = max(scores, key=lambda w: (scores[w], -abs(w - 0.5)))  # ties: the weight nearest an even mix
    return {"weight": best, "split": split, "queries": len(qids), "ndcg@10_by_weight": scores}
