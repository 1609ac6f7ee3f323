"""Hybrid retrieval: dense and BM25 candidates under the same filters, fused."""

from __future__ import annotations

from retrieval.types import Hit


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

    def __init__(self, weight: float = 0.5, candidates: int = 20, sentence_weight: float = 0.0):
        self.weight, self.candidates, self.sentence_weight = weight, candidates, sentence_weight

    def candidates_of(self, index, text, vector, k, scope=None) -> tuple[list[Hit], list[tuple[int, float]]]:
        """(dense hits, BM25 (row, score) pairs): each retriever's top max(k, candidates), before fusion; the dense
        side ranks a chunk by its best sentence too at `sentence_weight` (`LoreIndex.search_dense`)."""
        n = max(k, self.candidates)
        return index.search_dense(vector, n, scope, self.sentence_weight), index.search_lexical(text, n, scope)

    def fused(self, index, vector, dense: list[Hit], lex: list[tuple[int, float]], k: int,
              weight: float | None = None) -> list[Hit]:
        """The top k of the candidates fused at `weight` (default: this retriever's); hits carry the chunk's
        cosine."""
        order = fuse([(h.chunk.id, h.score) for h in dense], [(index.chunks[i].id, s) for i, s in lex],
                     self.weight if weight is None else weight)[:k]
        cos = {} if self.sentence_weight else {h.chunk.id: h.score for h in dense}
        return [Hit(index.chunks[index.row[cid]], cos[cid] if cid in cos else index.cosine(index.row[cid], vector),
                    rank) for rank, (cid, _) in enumerate(order)]

    def search(self, index, text, vector, k, scope=None):
        if index.lexical is None:
            return index.search_vector(vector, k, scope)
        return self.fused(index, vector, *self.candidates_of(index, text, vector, k, scope), k)


def make(spec) -> HybridRetriever:
    return HybridRetriever(spec.hybrid_weight, spec.candidates, spec.sentence_weight)
