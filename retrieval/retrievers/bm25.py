"""Lexical retrieval: BM25 ranking over the index's lexical primitive."""

from __future__ import annotations

from retrieval.types import Hit


class LexicalRetriever:
    """BM25 ranking; each hit still carries its dense cosine as the score (for thresholds), or its BM25 score when
    there is no query vector (a BM25-only evaluation embeds nothing)."""

    uses = frozenset({"bm25"})

    def search(self, index, text, vector, k, scope=None):
        if index.lexical is None:  # a generation from before BM25: dense is the honest fallback
            return index.search_vector(vector, k, scope)
        return [Hit(index.chunks[i], index.cosine(i, vector) if vector is not None else s, rank)
                for rank, (i, s) in enumerate(index.search_lexical(text, k, scope))]


def make(spec) -> LexicalRetriever:
    return LexicalRetriever()
