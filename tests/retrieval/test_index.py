import json

import numpy as np
import pytest

from retrieval.errors import CorpusError, IndexMismatchError, IndexMissingError
from retrieval.index import LoreIndex, read_current
from retrieval.rebuild import rebuild_index
from retrieval.types import Scope


@pytest.fixture
def built(tmp_path, tiny_corpus, embedder):
    stats = rebuild_index(tiny_corpus, tmp_path / "index", embedder)
    return tmp_path / "index", stats


def test_rebuild_writes_generation_with_manifest(built, embedder):
    root, stats = built
    assert stats.documents == 6 and stats.chunks >= 6 and stats.embedded == stats.chunks
    gen = read_current(root)
    manifest = json.loads((gen / "manifest.json").read_text())
    assert manifest["embedder"] == {"id": embedder.id, "dim": 384, "fingerprint": embedder.fingerprint}
    assert set(manifest["corpus"]["documents"]) == {"clock-room", "lending-rules", "founding", "the-fire-truth",
                                                    "wardens-keys", "garden-of-ink"}
    assert manifest["faiss"]["ntotal"] == stats.chunks


def test_search_finds_the_right_document(built, embedder):
    index = LoreIndex.open(built[0], embedder)
    assert index.search("Who built the clock with thirteen hours?", embedder, k=1)[0].chunk.doc == "clock-room"
    assert index.search("How many books may I borrow?", embedder, k=1)[0].chunk.doc == "lending-rules"
    assert index.search("What was the mule called?", embedder, k=1)[0].chunk.doc == "founding"


def test_faiss_matches_brute_force_oracle(built, embedder):
    index = LoreIndex.open(built[0], embedder)
    vectors = np.load(index.path / "vectors.npy")  # (N, dim)
    for q in ["clock", "lending fines", "fire in the east wing", "iron keys"]:
        qv = embedder.encode([q])[0]
        exact = np.argsort(-(vectors @ qv))[:3]
        got = [index.chunks.index(h.chunk) for h in index.search_vector(qv, 3)]
        assert got == exact.tolist()


def test_scope_filters_chapter_and_npc(built, embedder):
    index = LoreIndex.open(built[0], embedder)
    q = "Who set the Fire of 1731 and why?"
    assert index.search(q, embedder, k=1)[0].chunk.doc == "the-fire-truth"
    for ch in (1, 2):
        assert all(h.chunk.doc != "the-fire-truth" for h in index.search(q, embedder, k=10, scope=Scope(chapter=ch)))
    assert "the-fire-truth" in {h.chunk.doc for h in index.search(q, embedder, k=10, scope=Scope(chapter=3))}

    keys = "How many iron keys does the Warden carry?"
    warden = Scope(npc="warden", kinds=frozenset({"room", "rule", "character"}), chapter=1)
    archivist = Scope(npc="archivist", kinds=frozenset({"book", "history", "rule", "item"}), chapter=1)
    assert index.search(keys, embedder, k=1, scope=warden)[0].chunk.doc == "wardens-keys"
    assert all(h.chunk.doc != "wardens-keys" for h in index.search(keys, embedder, k=10, scope=archivist))
    # the warden knows rooms but not history: the founding is invisible to him
    assert all(h.chunk.kind != "history" for h in index.search("founding", embedder, k=10, scope=warden))


def test_incremental_rebuild_reuses_vectors(built, tiny_corpus, embedder):
    root, first = built
    doc = tiny_corpus / "garden-of-ink.md"
    doc.write_text(doc.read_text().replace("October", "November"), encoding="utf-8")
    second = rebuild_index(tiny_corpus, root, embedder)
    assert second.embedded == 1 and second.reused == first.chunks - 1
    index = LoreIndex.open(root, embedder)
    assert "November" in index.search("When are the oak galls picked?", embedder, k=1)[0].chunk.text
    third = rebuild_index(tiny_corpus, root, embedder)  # nothing changed: the live generation stays
    assert third.extra["unchanged"] and third.generation == second.generation
    fourth = rebuild_index(tiny_corpus, root, embedder, force=True)
    assert fourth.embedded == 0 and fourth.generation != second.generation
    for _ in range(2):
        rebuild_index(tiny_corpus, root, embedder, force=True)
    gens = [p for p in (root / "generations").iterdir() if not p.name.startswith(".")]
    assert len(gens) == 3  # the newest three are kept for rollback


def test_bad_lore_leaves_live_index_untouched(built, tiny_corpus, embedder):
    root, _ = built
    before = (root / "CURRENT").read_text()
    gens = sorted(p.name for p in (root / "generations").iterdir())
    (tiny_corpus / "broken.md").write_text("---\ntitle: Broken\nkind: room\n---\ntext\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="broken.md"):
        rebuild_index(tiny_corpus, root, embedder)
    assert (root / "CURRENT").read_text() == before  # refused before anything was written
    assert sorted(p.name for p in (root / "generations").iterdir()) == gens
    LoreIndex.open(root, embedder)


def test_a_rebuild_failing_after_staging_leaves_live_index_untouched(built, tiny_corpus, embedder, monkeypatch):
    """The disk fills once the staging folder is written in full (at its checksums): the staging folder goes, the
    live generation stays live and opens."""
    import retrieval.rebuild as rebuild_mod

    root, _ = built
    before = (root / "CURRENT").read_text()
    real, staged = rebuild_mod.write_checksums, []

    def disk_full(folder):
        real(folder)
        staged.append((folder.name, sorted(p.name for p in folder.iterdir())))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rebuild_mod, "write_checksums", disk_full)
    with pytest.raises(OSError, match="No space left"):
        rebuild_index(tiny_corpus, root, embedder, force=True)
    assert staged and staged[0][0].startswith(".staging-") and "manifest.json" in staged[0][1]
    assert (root / "CURRENT").read_text() == before
    assert not [p for p in (root / "generations").iterdir() if p.name.startswith(".")]
    LoreIndex.open(root, embedder)


def test_missing_and_mismatched_index(tmp_path, built, embedder):
    with pytest.raises(IndexMissingError, match="eterna index rebuild"):
        LoreIndex.open(tmp_path / "nowhere", embedder)

    class OtherEmbedder:
        id, dim, fingerprint = "some/other-model", 768, "abc"

    with pytest.raises(IndexMismatchError, match="built with embedder 'builtin:all-minilm-l6-v2"):
        LoreIndex.open(built[0], OtherEmbedder())


def test_embedder_precisions_mixed_agrees_with_fp32_and_each_is_its_own_index_id():
    from retrieval.embeddings import SentenceTransformerEmbedder, resolve_embedder_dtype
    from retrieval.errors import ModelNotFoundError

    fp32 = SentenceTransformerEmbedder("builtin:all-minilm-l6-v2", dtype="float32")
    mixed = SentenceTransformerEmbedder("builtin:all-minilm-l6-v2", dtype="mixed")
    assert fp32.id == "builtin:all-minilm-l6-v2" and mixed.id == "builtin:all-minilm-l6-v2@mixed"
    texts = ["Who built the clock?", "The harbour master keeps the tide tables in a locked drawer."]
    a, b = fp32.encode(texts), mixed.encode(texts)
    assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(a * b, axis=1))) > 0.999
    assert resolve_embedder_dtype("auto") in ("mixed", "float32")
    with pytest.raises(ModelNotFoundError, match="embedder dtype"):
        resolve_embedder_dtype("int8")


def test_embedder_pads_batches_to_a_few_shapes_without_changing_vectors():
    """Every batch is padded to a multiple of 16 tokens (a long-running server then meets a bounded set of input
    shapes, and oneDNN's per-shape kernel cache stops growing); mean pooling ignores the padding (fp32: the same
    vectors; bf16 products round differently with the shape, within the precision's own noise)."""
    from retrieval.embeddings import PAD_TO_MULTIPLE, SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder("builtin:all-minilm-l6-v2", dtype="float32")
    texts = ["Who?", "Who built the clock, and when did it first strike the hour over the harbour?"]
    for batch in (texts[:1], texts):
        width = embedder.model.tokenize(batch)["input_ids"].shape[1]
        assert width % PAD_TO_MULTIPLE == 0
    padded = embedder.encode(texts)
    embedder.model[0].processing_kwargs = {}  # the same model, batches padded to their longest text only
    try:
        assert embedder.model.tokenize(texts[:1])["input_ids"].shape[1] % PAD_TO_MULTIPLE != 0
        unpadded = embedder.encode(texts)
    finally:
        embedder.model[0].processing_kwargs = {"text": {"pad_to_multiple_of": PAD_TO_MULTIPLE}}
    assert np.abs(padded - unpadded).max() < 1e-5


def test_a_bfloat16_embedder_is_another_embedder_for_the_index(tiny_corpus, embedder, tmp_path):
    """bf16 vectors differ slightly from fp32 ones: the index records the dtype, refuses the other, and a rebuild
    with the bf16 embedder re-embeds everything."""
    from retrieval.embeddings import SentenceTransformerEmbedder
    from retrieval.errors import IndexMismatchError

    root = tmp_path / "index"
    rebuild_index(tiny_corpus, root, embedder)
    half = SentenceTransformerEmbedder("builtin:all-minilm-l6-v2", dtype="bfloat16")
    assert half.id.endswith("@bfloat16")
    q32, q16 = embedder.encode(["Who built the clock?"])[0], half.encode(["Who built the clock?"])[0]
    assert 0.99 < float(q32 @ q16) < 1.0 and q16.dtype == np.float32
    with pytest.raises(IndexMismatchError, match="bfloat16"):
        LoreIndex.open(root, half)
    stats = rebuild_index(tiny_corpus, root, half)
    assert stats.reused == 0 and stats.embedded == stats.chunks
    assert LoreIndex.open(root, half).search("Who built the clock?", half, 1)[0].chunk.doc == "clock-room"


def test_new_chunking_rules_rebuild_an_unchanged_corpus(built, tiny_corpus, embedder, monkeypatch):
    """Chunks made by older text rules (markup, mid-sentence overlaps) are not kept because the lore did not
    change: the rules' version is part of what a generation was built with."""
    import retrieval.rebuild as rebuild

    root, first = built
    assert rebuild_index(tiny_corpus, root, embedder).extra["unchanged"]
    monkeypatch.setattr(rebuild, "CHUNK_RULES", rebuild.CHUNK_RULES + 1)
    again = rebuild_index(tiny_corpus, root, embedder)
    assert not again.extra["unchanged"] and again.generation != first.generation
