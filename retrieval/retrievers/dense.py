"""Dense retrieval: nearest chunks by cosine."""

from __future__ import annotations

from retrieval.types import Hit


class DenseRetriever:
    """Nearest chunks by cosine (the index's FAISS search, filters applied inside it); with `sentence_weight`, a
    chunk also ranks by its best sentence (`LoreIndex.search_dense`). Hits carry their chunk's cosine."""

    uses = frozenset({"dense"})

    def __init__(self, sentence_weight: float = 0.0):
        self.sentence_weight = sentence_weight

    def search(self, index, text, vector, k, scope=None):
        hits = index.search_dense(vector, k, scope, self.sentence_weight)
        if not self.sentence_weight:
            return hits
        return [Hit(h.chunk, index.cosine(index.row[h.chunk.id], vector), h.rank) for h in hits]


def make(spec) -> DenseRetriever:
    return DenseRetriever(spec.sentence_weight)
