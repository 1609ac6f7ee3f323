"""The retriever seam (dense, BM25, hybrid, rerankers) and the index kinds (exact, IVF, HNSW) with filters inside the
search, checked against brute-force numpy search (the FAISS contrib habit: exact search is the oracle)."""

import numpy as np
import pytest

from retrieval.errors import ConfigError, IndexMismatchError, IndexMissingError
from retrieval.index import IndexSpec, LoreIndex, build_faiss, read_current
from retrieval.rebuild import rebuild_index
from retrieval.retriever import RetrieverSpec, make_retriever
from retrieval.retrievers.rerank import Reranked
from retrieval.types import Chunk, Scope


def synthetic(n: int, dim: int = 32, seed: int = 0) -> tuple[list[Chunk], np.ndarray]:
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)  # (N, dim)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    npcs = ["ana", "bo", "cy"]
    chunks = [Chunk(id=f"d{i}#0", doc=f"d{i}", title=f"t{i}", kind=("place", "person", "event")[i % 3],
                    npc_scope=None if i % 4 else (npcs[i % 3],), chapter=1 + i % 5, heading="", text=f"text {i}",
                    hash=f"h{i}") for i in range(n)]
    return chunks, vecs


def oracle(chunks, vecs, q, k, scope):
    allowed = [i for i, c in enumerate(chunks) if scope is None or scope.allows(c)]
    scores = vecs[allowed] @ q
    return [chunks[allowed[i]].id for i in np.argsort(-scores)[:k]]


def open_synthetic(n, spec, seed=0):
    chunks, vecs = synthetic(n, seed=seed)
    index, info = build_faiss(vecs, spec)
    return LoreIndex("/nonexistent", {"faiss": info}, chunks, index, None, vecs), chunks, vecs


SCOPES = [None, Scope(chapter=2), Scope(npc="ana", kinds=frozenset({"place"}), chapter=3),
          Scope(npc="bo", kinds=None, chapter=5), Scope(npc="cy", kinds=frozenset(), chapter=1)]


def test_the_vectorised_scope_mask_equals_scope_allows():
    index, chunks, _ = open_synthetic(400, IndexSpec())
    for scope in SCOPES[1:]:
        assert index.allowed_mask(scope).tolist() == [scope.allows(c) for c in chunks], scope


@pytest.mark.parametrize("factory,min_recall", [("Flat", 1.0), ("IVF32,Flat", 0.9), ("HNSW16,Flat", 0.9)])
def test_index_kinds_answer_like_exact_search_with_filters_inside(factory, min_recall):
    spec = IndexSpec(exact_max=0 if factory != "Flat" else 10**9, factory=factory, nprobe=16, ef_search=128)
    index, chunks, vecs = open_synthetic(6000, spec)
    assert index.exact == (factory == "Flat")
    rng = np.random.default_rng(1)
    recalls = []
    for scope in SCOPES:
        for q in rng.standard_normal((20, vecs.shape[1])).astype(np.float32):
            q /= np.linalg.norm(q)
            hits = index.search_vector(q, 10, scope)
            assert all(scope is None or scope.allows(h.chunk) for h in hits)  # filters never leak
            assert [h.rank for h in hits] == list(range(len(hits)))
            want = oracle(chunks, vecs, q, 10, scope)
            assert len(hits) == len(want)
            recalls.append(len({h.chunk.id for h in hits} & set(want)) / max(1, len(want)))
    assert np.mean(recalls) >= min_recall, np.mean(recalls)


def test_a_generation_above_the_threshold_gets_the_ann_index(tiny_corpus, embedder, tmp_path):
    root = tmp_path / "index"
    rebuild_index(tiny_corpus, root, embedder)
    assert LoreIndex.open(root, embedder).exact
    stats = rebuild_index(tiny_corpus, root, embedder, index_spec=IndexSpec(exact_max=2, factory="HNSW8,Flat"))
    assert not stats.extra["unchanged"] and stats.embedded == 0  # a new index kind, the same vectors
    index = LoreIndex.open(root, embedder)
    assert not index.exact and index.manifest["faiss"]["factory"] == "HNSW8,Flat"
    assert index.manifest["index_spec"]["exact_max"] == 2 and read_current(root).name == stats.generation
    q = embedder.encode(["Who built the clock?"])[0]
    assert index.search_vector(q, 3)[0].chunk.doc == "clock-room"


def mixed_oracle(chunks, vecs, svecs, srows, q, k, scope, weight):
    """Brute force of `search_dense`: over the top k chunks by cosine and the top k by best sentence (allowed ones),
    a chunk scores max(cos, weight * best + (1 - weight) * cos)."""
    allowed = [i for i, c in enumerate(chunks) if scope is None or scope.allows(c)]
    cos = {i: float(vecs[i] @ q) for i in allowed}
    s = svecs.astype(np.float32) @ q
    best = {i: float(s[srows == i].max()) for i in allowed if np.any(srows == i)}
    pool = set(sorted(cos, key=lambda i: -cos[i])[:k]) | set(sorted(best, key=lambda i: -best[i])[:k])
    mixed = {i: max(cos[i], weight * best[i] + (1 - weight) * cos[i]) if i in best else cos[i] for i in pool}
    return sorted(pool, key=lambda i: (-mixed[i], i))[:k], mixed


@pytest.mark.parametrize("weight,in_memory", [(0.3, 64_000_000), (1.0, 64_000_000), (0.3, 0)])
def test_sentence_mixed_dense_search_equals_brute_force_under_filters(weight, in_memory, monkeypatch):
    """A chunk that holds one sentence close to the query ranks by it; filters apply to sentences too; the same with
    the vectors held as float32 and read from float16 slice by slice (`in_memory` 0)."""
    monkeypatch.setattr("retrieval.index.SENTENCES_IN_MEMORY", in_memory)
    chunks, vecs = synthetic(300, seed=3)
    rng = np.random.default_rng(4)
    srows = np.sort(rng.integers(0, 300, size=1200)).astype(np.int32)  # some chunks have no sentence
    svecs = rng.standard_normal((1200, 32)).astype(np.float32)
    svecs = (svecs / np.linalg.norm(svecs, axis=1, keepdims=True)).astype(np.float16)
    index = LoreIndex("/nonexistent", {}, chunks, build_faiss(vecs, IndexSpec())[0], None, vecs, (svecs, srows))
    for seed in range(5):
        q = np.random.default_rng(seed).standard_normal(32).astype(np.float32)
        q /= np.linalg.norm(q)
        for scope in SCOPES:
            hits = index.search_dense(q, 8, scope, weight)
            want, mixed = mixed_oracle(chunks, vecs, svecs, srows, q, 8, scope, weight)
            assert [index.row[h.chunk.id] for h in hits] == want, scope
            assert [h.score for h in hits] == pytest.approx([mixed[i] for i in want], abs=1e-5)
        assert [h.chunk.id for h in index.search_dense(q, 8, None, 0.0)] == oracle(chunks, vecs, q, 8, None)


def test_a_generation_stores_and_reuses_its_sentence_vectors(tiny_corpus, embedder, tmp_path):
    from retrieval.index import sentence_texts

    root = tmp_path / "index"
    first = rebuild_index(tiny_corpus, root, embedder)
    index = LoreIndex.open(root, embedder)
    svecs, srows = index.sentences
    texts, rows = sentence_texts(index.chunks)
    assert srows.tolist() == rows and len(texts) == index.manifest["counts"]["sentences"] == first.extra[
        "sentences_embedded"] > len(index.chunks)
    assert texts[0].startswith(f"{index.chunks[0].title}: ")
    np.testing.assert_allclose(svecs[:3].astype(np.float32), embedder.encode(texts[:3]), atol=2e-3)
    doc = next(tiny_corpus.glob("*.md"))  # one changed file: only its sentences are embedded again
    doc.write_text(doc.read_text(encoding="utf-8") + "\nA new closing sentence was added here today.\n",
                   encoding="utf-8")
    second = rebuild_index(tiny_corpus, root, embedder)
    assert 1 <= second.extra["sentences_embedded"] < first.extra["sentences_embedded"]
    rebuild_index(tiny_corpus, root, embedder, index_spec=IndexSpec(sentences=False))
    plain = LoreIndex.open(root, embedder)  # built without them: dense search is chunk search at any weight
    assert plain.sentences is None and not (read_current(root) / "sentences.npy").exists()
    q = embedder.encode(["Who built the clock?"])[0]
    assert [h.chunk.id for h in plain.search_dense(q, 3, None, 0.5)] == [h.chunk.id for h in
                                                                        plain.search_vector(q, 3)]


def test_a_damaged_sentence_file_is_a_clear_error(tiny_corpus, embedder, tmp_path):
    root = tmp_path / "index"
    rebuild_index(tiny_corpus, root, embedder, index_spec=IndexSpec(sentences=False))
    gen = read_current(root)
    np.save(gen / "sentences.npy", np.zeros((3, 7), dtype=np.float16))  # wrong dimension, rows missing
    (gen / "checksums.json").unlink()
    with pytest.raises(IndexMissingError, match="sentence_rows.npy: missing; rebuild"):
        LoreIndex.open(root, embedder)
    np.save(gen / "sentence_rows.npy", np.zeros(3, dtype=np.int32))
    with pytest.raises(IndexMismatchError, match=r"sentences.npy: shape \(3, 7\).*rebuild"):
        LoreIndex.open(root, embedder)


@pytest.fixture
def lore_index(tiny_corpus, embedder, tmp_path):
    rebuild_index(tiny_corpus, tmp_path / "index", embedder)
    return LoreIndex.open(tmp_path / "index", embedder)


@pytest.mark.parametrize("mode,sentence_weight", [("dense", 0.0), ("bm25", 0.0), ("hybrid", 0.0), ("dense", 0.3),
                                                  ("hybrid", 0.3)])
def test_every_mode_finds_the_document_and_keeps_dense_cosines(lore_index, embedder, mode, sentence_weight):
    r = make_retriever(RetrieverSpec(mode=mode, sentence_weight=sentence_weight), embedder)
    text = "Who built the clock?"
    q = embedder.encode([text])[0]
    hits = r.search(lore_index, text, q, 3)
    assert hits[0].chunk.doc == "clock-room"
    for h in hits:  # the score is the chunk's dense cosine under every mode: thresholds keep their meaning
        assert h.score == pytest.approx(float(lore_index.vectors[lore_index.row[h.chunk.id]] @ q), abs=1e-5)
    scope = Scope(chapter=1)
    assert all(h.chunk.chapter <= 1 for h in r.search(lore_index, text, q, 10, scope))


def test_bm25_mode_ranks_by_terms_not_by_meaning(lore_index, embedder):
    """A query that shares a rare word with one document: BM25 puts it first whatever the embedding says."""
    doc = next(c for c in lore_index.chunks if c.doc == "garden-of-ink")
    rare = max((w.strip(".,").lower() for w in doc.text.split()), key=len)
    hits = make_retriever(RetrieverSpec(mode="bm25")).search(lore_index, rare, embedder.encode([rare])[0], 3)
    assert hits and hits[0].chunk.doc == "garden-of-ink"


def test_sentence_reranker_reorders_within_the_candidates(lore_index, embedder):
    text = "When did the fire burn the east wing?"
    q = embedder.encode([text])[0]
    first = make_retriever(RetrieverSpec(mode="dense", candidates=8)).search(lore_index, text, q, 8)
    reranked = make_retriever(RetrieverSpec(mode="dense", candidates=8, rerank="sentences", rerank_weight=1.0),
                              embedder)
    assert isinstance(reranked, Reranked)
    hits = reranked.search(lore_index, text, q, 4)
    assert {h.chunk.id for h in hits} <= {h.chunk.id for h in first}
    best = reranked.reranker.scores(text, q, first)  # weight 1.0: the order is the reranker's alone
    assert [h.chunk.id for h in hits] == [first[i].chunk.id for i in np.argsort(-best, kind="stable")[:4]]


def test_cross_encoder_reranker_from_a_local_folder(lore_index, embedder, tmp_path):
    from sentence_transformers import CrossEncoder
    from transformers import BertConfig, BertForSequenceClassification

    tok = embedder.model.tokenizer
    model = BertForSequenceClassification(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=64, num_labels=1))
    folder = tmp_path / "ce"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    r = make_retriever(RetrieverSpec(mode="hybrid", rerank="cross-encoder", rerank_model=str(folder),
                                     rerank_weight=1.0), embedder)
    text = "Who built the clock?"
    q = embedder.encode([text])[0]
    hits = r.search(lore_index, text, q, 3)
    first = make_retriever(RetrieverSpec(mode="hybrid")).search(lore_index, text, q, 20)
    ce = CrossEncoder(str(folder), device="cpu")
    want = ce.predict([(text, f"{h.chunk.title}: {h.chunk.text}") for h in first])
    assert [h.chunk.id for h in hits] == [first[i].chunk.id for i in np.argsort(-want, kind="stable")[:3]]


def test_unknown_modes_are_config_errors():
    with pytest.raises(ConfigError, match="unknown retrieval mode 'sparse'; available: bm25, dense, hybrid"):
        make_retriever(RetrieverSpec(mode="sparse"))
    with pytest.raises(ConfigError, match="unknown reranker"):
        make_retriever(RetrieverSpec(rerank="colbert"))


def test_config_builds_the_retriever_and_checks_the_reranker(embedder):
    from pydantic import ValidationError

    from app.config import RetrievalConfig

    assert type(RetrievalConfig(mode="bm25").retriever()).__name__ == "LexicalRetriever"
    with pytest.raises(ValidationError, match="rerank_model"):
        RetrievalConfig(rerank="cross-encoder")


def test_llamaindex_adapter_goes_through_the_retriever(lore_index, embedder):
    from retrieval.llamaindex import EternaRetriever

    r = EternaRetriever(lore_index, embedder, k=2, retriever=make_retriever(RetrieverSpec(mode="bm25")))
    nodes = r.retrieve("clock")
    assert nodes and nodes[0].node.metadata["doc"] == "clock-room"


def test_reranker_names_come_from_the_registry():
    from pydantic import ValidationError

    from app.config import RetrievalConfig
    from retrieval.retriever import RERANKERS

    with pytest.raises(ValidationError, match="unknown reranker 'colbert'; available: none, cross-encoder, sentences"):
        RetrievalConfig(rerank="colbert")
    RERANKERS.add("colbert", lambda spec, embedder: None)  # a new reranker is one registry line, no config edit
    try:
        assert RetrievalConfig(rerank="colbert").rerank == "colbert"
    finally:
        del RERANKERS["colbert"]


class _Reversed:
    """The dense ranking upside down: a retriever that must lose to every real one."""

    uses = frozenset({"dense"})

    def search(self, index, text, vector, k, scope=None):
        return index.search_vector(vector, len(index.chunks), scope)[::-1][:k]


def test_retrieval_report_searches_through_the_given_retriever(lore_index, embedder, tmp_path):
    from app.config import Cast
    from app.evaluation.measures import retrieval_report
    from tests.fixtures_data import NPCS_YAML

    (tmp_path / "npcs.yaml").write_text(NPCS_YAML, encoding="utf-8")
    cast = Cast.load(tmp_path / "npcs.yaml")
    items = [{"question": "Who built the great clock?", "doc": "clock-room", "npc": "director", "chapter": 1},
             {"question": "How many books may a reader borrow?", "doc": "lending-rules", "npc": "director", "chapter": 1}]
    by_mode = {m: retrieval_report(lore_index, embedder, items, cast, retriever=make_retriever(RetrieverSpec(mode=m)))
               for m in ("dense", "bm25", "hybrid")}
    assert all(r["hit@1"] == 1.0 for r in by_mode.values()), by_mode
    assert retrieval_report(lore_index, embedder, items, cast) == by_mode["dense"]  # the default: dense
    assert retrieval_report(lore_index, embedder, items, cast, retriever=_Reversed())["hit@1"] == 0.0
