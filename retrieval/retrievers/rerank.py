"""Second-stage rerankers (the embedder over each candidate's sentences, or a local cross-encoder) and `Reranked`,
which mixes a reranker's scores with a first stage's ranks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrieval.text import split_sentences
from retrieval.types import Hit

if TYPE_CHECKING:
    import numpy as np


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
            parts = [split_sentences(c.text, min_words=3) or [c.text] for c in todo]
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

        self.path = model  # what the router's cache key names (the model object is described by its type)
        self.model = CrossEncoder(model, device="cpu", local_files_only=True)

    def scores(self, text: str, vector: np.ndarray, hits: list[Hit]) -> np.ndarray:
        import numpy as np

        pairs = [(text, f"{h.chunk.title}: {h.chunk.text}") for h in hits]
        return np.asarray(self.model.predict(pairs, show_progress_bar=False), dtype=np.float64)


class Reranked:
    """First stage over `candidates` hits, then a reranker's scores mixed with the first-stage rank
    (min-max normalised, convex weight); the hits keep their dense cosine as `score`."""

    def __init__(self, first, reranker, candidates: int = 20, weight: float = 0.5):
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


def sentences(spec, embedder) -> SentenceReranker:
    return SentenceReranker(embedder)


def cross_encoder(spec, embedder) -> CrossEncoderReranker:
    return CrossEncoderReranker(spec.rerank_model)
