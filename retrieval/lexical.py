"""Lexical search (BM25, the `bm25s` package with a Snowball English stemmer) and score fusion with dense search.

`LexicalIndex` scores every document for a query, so scope and chapter filters are applied before ranking, exactly
as in the dense index. `fuse` combines two score lists per query by min-max normalisation over the union of both
candidate lists and a weighted sum (convex combination; Bruch et al., 2023, found it more robust than reciprocal
rank fusion when one retriever is much weaker than the other, as BM25 is on paraphrased questions).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _stemmer():
    try:
        import Stemmer

        return Stemmer.Stemmer("english")
    except ImportError:  # PyStemmer is optional: BM25 without stemming still works, a little worse
        return None


class LexicalIndex:
    def __init__(self, retriever, n_docs: int, stem: bool):
        self.retriever, self.n_docs, self.stem = retriever, n_docs, stem
        self._stemmer = _stemmer() if stem else None

    @classmethod
    def build(cls, texts: list[str], *, k1: float = 1.2, b: float = 0.75, stem: bool = True) -> LexicalIndex:
        import bm25s

        stemmer = _stemmer() if stem else None
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


def fuse(dense: list[tuple[str, float]], lexical: list[tuple[str, float]], weight: float) -> list[tuple[str, float]]:
    """Convex combination of min-max normalised scores over the union of candidates: weight * dense +
    (1 - weight) * lexical; a candidate missing from one list gets that list's minimum (0 after normalising)."""
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
