"""LlamaIndex integration: Eterna's scoped, chapter-aware lore index as a LlamaIndex retriever.

    from retrieval.llamaindex import EternaRetriever
    retriever = EternaRetriever(index, embedder, k=4, scope=Scope(npc="guard", kinds=..., chapter=1))
    nodes = retriever.retrieve("Where is the crypt gate?")   # list[NodeWithScore], metadata carries doc/chunk

so a team already on LlamaIndex (query engines, response synthesisers, agents) keeps its pipeline and gets the
NPC-scope and chapter filters, incremental rebuilds and manifests of Eterna's index. `llama-index-core` is
imported only here.
"""

from __future__ import annotations

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from retrieval.embeddings import Embedder
from retrieval.index import LoreIndex
from retrieval.retriever import Retriever
from retrieval.retrievers.dense import DenseRetriever
from retrieval.types import Hit, Scope


def hit_to_node(hit: Hit) -> NodeWithScore:
    c = hit.chunk
    node = TextNode(id_=c.id, text=c.text, metadata={
        "doc": c.doc, "chunk": c.id, "title": c.title, "kind": c.kind, "chapter": c.chapter,
        "heading": c.heading, "npc_scope": list(c.npc_scope) if c.npc_scope else "all"})
    return NodeWithScore(node=node, score=hit.score)


class EternaRetriever(BaseRetriever):
    """`retriever`: any Eterna retriever (dense by default; `make_retriever(RetrieverSpec(mode="hybrid"))` or
    `config.retrieval.retriever(embedder)` for the configured one)."""

    def __init__(self, index: LoreIndex, embedder: Embedder, k: int = 4, scope: Scope | None = None,
                 retriever: Retriever | None = None):
        super().__init__()
        self._index, self._embedder, self._k, self._scope = index, embedder, k, scope
        self._retriever = retriever or DenseRetriever()

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        if query_bundle.embedding is not None:
            import numpy as np

            vec = np.asarray(query_bundle.embedding, dtype=np.float32)
        else:
            vec = self._embedder.encode([query_bundle.query_str])[0]
        hits = self._retriever.search(self._index, query_bundle.query_str, vec, self._k, self._scope)
        return [hit_to_node(h) for h in hits]
