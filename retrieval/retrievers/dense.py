"""Dense retrieval: nearest chunks by cosine."""

from __future__ import annotations


class DenseRetriever:
    """Nearest chunks by cosine (the index's FAISS search, filters applied inside it)."""

    uses = frozenset({"dense"})

    def search(self, index, text, vector, k, scope=None):
        return index.search_vector(vector, k, scope)


def make(spec) -> DenseRetriever:
    return DenseRetriever()
