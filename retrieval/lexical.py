"""Lexical search: BM25 (the `bm25s` package with a Snowball English stemmer), a primitive of the index.

`LexicalIndex` scores every document for a query, so scope and chapter filters are applied before ranking, exactly
as in the dense index. Fusing it with dense search is the hybrid retriever's (retrieval/retriever.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def english_stemmer():
    """PyStemmer's Snowball English stemmer, or None when PyStemmer is not installed."""
    try:
        import Stemmer

        return Stemmer.Stemmer("english")
    except ImportError:  # PyStemmer is optional: BM25 without stemming still works, a little worse
        return None


class LexicalIndex:
    def __init__(self, retriever, n_docs: int, stem: bool):
        self.retriever, self.n_docs, self.stem = retriever, n_docs, stem
        self._stemmer = english_stemmer() if stem else None

    @classmethod
    def build(cls, texts: list[str], *, k1: float = 1.2, b: float = 0.75, stem: bool = True) -> LexicalIndex:
        import bm25s

        stemmer = english_stemmer() if stem else None
        tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)
        retriever = bm25s.BM25(k1=k1, b=b)
        retriever.index(tokens, show_progress=False)
        return cls(retriever, len(texts), stemmer is not None)

    def save(self, folder: Path) -> None:
        self.retriever.save(str(folder), show_progress=False)
        (Path(folder) / "eterna_lexical.json").write_text(
            f'{{"n_docs": {self.n_docs}, "stem": {str(self.stem).lower()}}}', encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        import json

        import bm25s

        meta = json.loads((Path(folder) / "eterna_lexical.json").read_text(encoding="utf-8"))
        return cls(bm25s.BM25.load(str(folder)), meta["n_docs"], meta["stem"])

    def _tokens(self, query: str) -> list[str]:
        import bm25s

        tok = bm25s.tokenize([query], stopwords="en", stemmer=self._stemmer, return_ids=False, show_progress=False)
        return tok[0]

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document (N,); 0 where no query term occurs."""
        terms = [t for t in self._tokens(query) if t in self.retriever.vocab_dict]
        if not terms:
            return np.zeros(self.n_docs, dtype=np.float32)
        return np.asarray(self.retriever.get_scores(terms), dtype=np.float32)

    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Top-k (doc index, score), only among `allowed` (a boolean mask) when given: filters before ranking."""
        s = self.scores(query)
        if allowed is not None:
            s = np.where(allowed, s, -np.inf)
        k = min(k, s.size)
        top = np.argpartition(-s, k - 1)[:k] if k else np.array([], dtype=int)
        top = top[np.argsort(-s[top])]
        return [(int(i), float(s[i])) for i in top if np.isfinite(s[i]) and s[i] > 0]
