"""The retriever seam: one small interface that the engine, the router's lore signal, the evaluation and the
LlamaIndex adapter all search through, so dense, BM25 and hybrid search (and a reranking stage) are
interchangeable by config.

    retriever = make_retriever(RetrieverSpec(mode="hybrid", rerank="sentences"), embedder)
    hits = retriever.search(index, "Where is the crypt gate?", qvec, k=4, scope=Scope(npc="guard", chapter=1))

A retriever owns its algorithm and is stateless over the index (the engine swaps index generations between turns):
`LoreIndex` stores and searches the primitives (vectors, BM25), the retrievers combine them. Every implementation
returns `Hit`s whose `score` is the dense cosine of the chunk, so score thresholds mean the same under every mode.
`uses` names the primitives a retriever searches ("dense", "bm25"), so an evaluation builds only those. The
implementations live in `retrieval/retrievers/`, one module per mode (and one for the rerankers), imported on first
use: a new mode is a module there with `make(spec)` and one `MODES.add` line here; config validation, the CLI's
choices and `eterna eval retrieval --mode all` read the registry.
"""

from __future__ import annotations

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
    sentence_weight: float = 0.0  # dense: weight of a chunk's best sentence in its score (LoreIndex.search_dense)


class Retriever(Protocol):
    uses: frozenset[str]  # the index's primitives it searches: "dense", "bm25"

    def search(self, index: LoreIndex, text: str, vector: np.ndarray | None, k: int,
               scope: Scope | None = None) -> list[Hit]:
        """Top-k chunks for a query (its text and its (dim,) normalised embedding) within the scope."""
        ...


def _lazy(module: str, attr: str = "make"):
    """A registry entry that imports `retrieval.retrievers.<module>` only when the name is first built."""
    def build(*args):
        from importlib import import_module

        return getattr(import_module(f"retrieval.retrievers.{module}"), attr)(*args)

    return build


MODES: Registry = Registry("retrieval mode")  # name -> (RetrieverSpec -> Retriever); eval retrieval runs them all
MODES.add("dense", _lazy("dense"))
MODES.add("bm25", _lazy("bm25"))
MODES.add("hybrid", _lazy("hybrid"))

RERANKERS: Registry = Registry("reranker")  # name -> ((RetrieverSpec, embedder) -> reranker); "none" is no stage
RERANKERS.add("sentences", _lazy("rerank", "sentences"))
RERANKERS.add("cross-encoder", _lazy("rerank", "cross_encoder"))


def make_retriever(spec: RetrieverSpec, embedder=None) -> Retriever:
    first = MODES.lookup(spec.mode, "retrieval.mode: ")(spec)
    if spec.rerank == "none":
        return first
    reranker = RERANKERS.lookup(spec.rerank, "retrieval.rerank: ")(spec, embedder)
    from retrieval.retrievers.rerank import Reranked

    return Reranked(first, reranker, spec.candidates, spec.rerank_weight)
