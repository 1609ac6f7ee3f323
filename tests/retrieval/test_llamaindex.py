from retrieval.index import LoreIndex
from retrieval.llamaindex import EternaRetriever
from retrieval.rebuild import rebuild_index
from retrieval.types import Scope


def test_retriever_returns_scoped_nodes(tmp_path, tiny_corpus, embedder):
    rebuild_index(tiny_corpus, tmp_path / "index", embedder)
    index = LoreIndex.open(tmp_path / "index", embedder)
    nodes = EternaRetriever(index, embedder, k=2).retrieve("Who set the Fire of 1731?")
    assert nodes[0].node.metadata["doc"] == "the-fire-truth" and nodes[0].score > nodes[1].score
    early = EternaRetriever(index, embedder, k=10, scope=Scope(chapter=1)).retrieve("Who set the Fire of 1731?")
    assert all(n.node.metadata["chapter"] == 1 for n in early)
    assert nodes[0].node.node_id == nodes[0].node.metadata["chunk"]
