"""The retriever seam: one small interface that the engine, the router's lore signal, the evaluation and the
LlamaIndex adapter all search through, so dense, BM25 and hybrid search (and a reranking stage) are
interchangeable by config.

    retriever = make_retriever(RetrieverSpec(mode="hybrid", rerank="sentences"), embedder)
    hits = retriever.search(index, "Where is the crypt gate?", qvec, k=4, scope=Scope(npc="guard", chapter=1))

A retriever owns its algorithm and is stateless over the index (the engine swaps index generations between turns):
`LoreIndex` stores and searches the primitives (vectors, BM25), the retrievers combine them. Every implementation
returns `Hit`s whose `score` is the dense cosine of the chunk, so score thresholds mean the same under every mode.
`uses` names the primitives a retriever searches ("dense", "bm25"), so an evaluation builds only those. A new mode
is a class and its `MODES.add`: config validation, the CLI's choices and `eterna eval retrieval --mode all` read
the registry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from retrieval.registry import Registry
from retrieval.types import Hit, Scope

if TYPE_CHECKING:  # the CLI reads the modes' names for its choices without loading FAISS or numpy
    import numpy as np

    from retrieval.index import LoreIndex


@dataclass(frozen=True)
class RetrieverSpec:
    mode: str = "dense"  # dense | bm25 | hybrid
    hybrid_weight: float = 0.5  # weight of the dense scores in the fusion
    candidates: int = 20  # candidates per retriever before fusion or reranking
    rerank: str = "none"  # none | sentences | cross-encoder
    rerank_model: str | None = None  # a local sentence-transformers CrossEncoder folder (rerank: cross-encoder)
    rerank_weight: float = 0.5  # weight of the reranker's score against the first stage's (min-max normalised)


class Retriever(Protocol):
    uses: frozenset[str]  # the index's primitives it searches: "dense", "bm25"

    def search(self, index: LoreIndex, text: str, vector: np.ndarray | None, k: int,
               scope: Scope | None = None) -> list[Hit]:
        """Top-k chunks for a query (its text and its (dim,) normalised embedding) within the scope."""
        ...


class DenseRetriever:
    """Nearest chunks by cosine (the index's FAISS search, filters applied inside it)."""

    uses = frozenset({"dense"})

    def search(self, index, text, vector, k, scope=None):
        return index.search_vector(vector, k, scope)


class LexicalRetriever:
    """BM25 ranking; each hit still carries its dense cosine as the score (for thresholds), or its BM25 score when
    there is no query vector (a BM25-only evaluation embeds nothing)."""

    uses = frozenset({"bm25"})

    def search(self, index, text, vector, k, scope=None):
        if index.lexical is None:  # a generation from before BM25: dense is the honest fallback
            return index.search_vector(vector, k, scope)
        return [Hit(index.chunks[i], index.cosine(i, vector) if vector is not None else s, rank)
                for rank, (i, s) in enumerate(index.search_lexical(text, k, scope))]


def fuse(dense: list[tuple[str, float]], lexical: list[tuple[str, float]], weight: float) -> list[tuple[str, float]]:
    """Convex combination of min-max normalised scores over the union of candidates: weight * dense +
    (1 - weight) * lexical; a candidate missing from one list gets that list's minimum (0 after normalising).
    Bruch et al. (2023) found it more robust than reciprocal rank fusion when one retriever is much weaker than the
    other, as BM25 is on paraphrased questions."""
    import numpy as np

    def norm(pairs):
        if not pairs:
            return {}
        vals = np.array([s for _, s in pairs], dtype=float)
        lo, hi = vals.min(), vals.max()
        return {d: (s - lo) / (hi - lo) if hi > lo else 1.0 for d, s in pairs}

    nd, nl = norm(dense), norm(lexical)
    ids = list(dict.fromkeys([d for d, _ in dense] + [d for d, _ in lexical]))
    fused = [(d, weight * nd.get(d, 0.0) + (1 - weight) * nl.get(d, 0.0)) for d in ids]
    return sorted(fused, key=lambda x: -x[1])


class HybridRetriever:
    """Dense and BM25 candidates under the same filters, fused (`fuse`, `weight` on dense); the hits keep their
    dense cosine as `score`, so thresholds and evidence selection stay calibrated. Without a lexical index (an
    older generation) this is dense search."""

    uses = frozenset({"dense", "bm25"})

    def __init__(self, weight: float = 0.5, candidates: int = 20):
        self.weight, self.candidates = weight, candidates

    def candidates_of(self, index, text, vector, k, scope=None) -> tuple[list[Hit], list[tuple[int, float]]]:
        """(dense hits, BM25 (row, score) pairs): each retriever's top max(k, candidates), before fusion."""
        n = max(k, self.candidates)
        return index.search_vector(vector, n, scope), index.search_lexical(text, n, scope)

    def fused(self, index, vector, dense: list[Hit], lex: list[tuple[int, float]], k: int,
              weight: float | None = None) -> list[Hit]:
        """The top k of the candidates fused at `weight` (default: this retriever's)."""
        order = fuse([(h.chunk.id, h.score) for h in dense], [(index.chunks[i].id, s) for i, s in lex],
                     self.weight if weight is None else weight)[:k]
        cos = {h.chunk.id: h.score for h in dense}
        return [Hit(index.chunks[index.row[cid]], cos[cid] if cid in cos else index.cosine(index.row[cid], vector),
                    rank) for rank, (cid, _) in enumerate(order)]

    def search(self, index, text, vector, k, scope=None):
        if index.lexical is None:
            return index.search_vector(vector, k, scope)
        return self.fused(index, vector, *self.candidates_of(index, text, vector, k, scope), k)


_SENTENCE = re.compile(r"(?<=[.!?])\s+")


class SentenceReranker:
    """Second pass with the embedder itself over more candidates: a chunk's score becomes the best cosine of its
    sentences (late interaction at sentence level), mixed with the first stage's rank score. Cheap: sentence
    vectors are cached per chunk hash."""

    def __init__(self, embedder, weight: float = 0.5):
        self.embedder, self.weight = embedder, weight
        self._cache: dict[str, np.ndarray] = {}

    def scores(self, text: str, vector: np.ndarray, hits: list[Hit]) -> np.ndarray:
        import numpy as np

        todo = [h.chunk for h in hits if h.chunk.hash not in self._cache]
        if todo:
            parts = [[s for s in _SENTENCE.split(c.text) if len(s.split()) >= 3] or [c.text] for c in todo]
            vecs = self.embedder.encode([s for p in parts for s in p])  # (S, dim)
            i = 0
            for c, p in zip(todo, parts):
                self._cache[c.hash] = vecs[i:i + len(p)]
                i += len(p)
            if len(self._cache) > 50_000:
                self._cache.clear()
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        return np.array([float((self._cache[h.chunk.hash] @ q).max()) for h in hits])


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder from a local folder (nothing downloads)."""

    def __init__(self, model: str):
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(model, device="cpu", local_files_only=True)

    def scores(self, text: str, vector: np.ndarray, hits: list[Hit]) -> np.ndarray:
        import numpy as np

        pairs = [(text, f"{h.chunk.title}: {h.chunk.text}") for h in hits]
        return np.asarray(self.model.predict(pairs, show_progress_bar=False), dtype=np.float64)


class Reranked:
    """First stage over `candidates` hits, then a reranker's scores mixed with the first-stage rank
    (min-max normalised, convex weight); the hits keep their dense cosine as `score`."""

    def __init__(self, first: Retriever, reranker, candidates: int = 20, weight: float = 0.5):
        self.first, self.reranker, self.candidates, self.weight = first, reranker, candidates, weight
        self.uses = first.uses

    def search(self, index, text, vector, k, scope=None):
        import numpy as np

        hits = self.first.search(index, text, vector, max(k, self.candidates), scope)
        if len(hits) <= 1:
            return hits[:k]
        r = self.reranker.scores(text, vector, hits)
        r = (r - r.min()) / (r.max() - r.min()) if r.max() > r.min() else np.ones_like(r)
        first = 1.0 - np.arange(len(hits)) / (len(hits) - 1)  # rank-based: modes differ in score scales
        mixed = self.weight * r + (1 - self.weight) * first
        order = np.argsort(-mixed, kind="stable")[:k]
        return [Hit(hits[i].chunk, hits[i].score, rank) for rank, i in enumerate(order)]


MODES: Registry = Registry("retrieval mode")  # name -> (RetrieverSpec -> Retriever); eval retrieval runs them all
MODES.add("dense", lambda spec: DenseRetriever())
MODES.add("bm25", lambda spec: LexicalRetriever())
MODES.add("hybrid", lambda spec: HybridRetriever(spec.hybrid_weight, spec.candidates))

RERANKERS: Registry = Registry("reranker")
RERANKERS.add("sentences", lambda spec, embedder: SentenceReranker(embedder))
RERANKERS.add("cross-encoder", lambda spec, embedder: CrossEncoderReranker(spec.rerank_model))


def make_retriever(spec: RetrieverSpec, embedder=None) -> Retriever:
    first = MODES.lookup(spec.mode, "retrieval.mode: ")(spec)
    if spec.rerank == "none":
        return first
    reranker = RERANKERS.lookup(spec.rerank, "retrieval.rerank: ")(spec, embedder)
    return Reranked(first, reranker, spec.candidates, spec.rerank_weight)
