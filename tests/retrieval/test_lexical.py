"""BM25 (bm25s), score fusion, and `eval retrieval` (every registered retriever) on a hand-made BEIR folder with
hand-checked metrics."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from app.evaluation.retrieval_eval import evaluate_beir, metrics, read_beir
from retrieval.errors import EternaError
from retrieval.lexical import LexicalIndex
from retrieval.retrievers.hybrid import HybridRetriever, fuse

DOCS = [{"_id": "d1", "title": "Clocks", "text": "The great clock was built by Oriol Santpere in 1702."},
        {"_id": "d2", "title": "Lending", "text": "A reader may borrow three books at once for 21 days."},
        {"_id": "d3", "title": "Gardens", "text": "The ink garden grows oak galls for the scribes."},
        {"_id": "d4", "title": "Fire", "text": "The fire of 1731 burned the east wing and its clocks."}]


def test_bm25_ranks_by_terms_and_filters_before_ranking():
    idx = LexicalIndex.build([f"{d['title']} {d['text']}" for d in DOCS])
    top = idx.search("who built the clock", 3)
    assert top[0][0] == 0 and {i for i, _ in top} <= {0, 3}  # stemmed: "clocks" matches "clock"
    allowed = np.array([False, True, True, True])
    assert idx.search("who built the clock", 3, allowed)[0][0] == 3  # d1 filtered out, never ranked
    assert idx.search("zebra xylophone", 3) == []


def test_fusion_is_a_convex_mix_of_normalised_scores():
    fused = dict(fuse([("a", 0.9), ("b", 0.5)], [("b", 10.0), ("c", 2.0)], weight=0.5))
    assert fused == pytest.approx({"a": 0.5, "b": 0.5, "c": 0.0})
    assert [d for d, _ in fuse([("a", 0.9), ("b", 0.5)], [("b", 10.0), ("c", 2.0)], weight=0.8)][0] == "a"


def test_trec_metrics_by_hand():
    ranked = {"q1": ["d2", "d1", "d3"], "q2": ["d4", "d3"]}
    qrels = {"q1": {"d1": 1}, "q2": {"d1": 1, "d4": 1}}
    m = metrics(ranked, qrels)
    # q1: relevant at rank 2 -> nDCG 1/log2(3) = 0.6309; q2: d4 at rank 1, d1 missing -> 1 / (1 + 1/log2 3) = 0.6131
    assert m["ndcg@10"] == pytest.approx((0.6309 + 0.6131) / 2, abs=1e-3)
    assert m["recall@5"] == pytest.approx((1 + 0.5) / 2) and m["mrr@10"] == pytest.approx((0.5 + 1) / 2)


@pytest.fixture
def beir(tmp_path):
    folder = tmp_path / "toy"
    (folder / "qrels").mkdir(parents=True)
    with gzip.open(folder / "corpus.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("".join(json.dumps(d) + "\n" for d in DOCS))
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "who built the great clock"}) + "\n" +
                                          json.dumps({"_id": "q2", "text": "how many books can I borrow"}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    return folder


def test_eval_retrieval_on_a_beir_folder_is_cached(beir, embedder, tmp_path):
    for mode in ("bm25", "dense", "hybrid"):
        out = evaluate_beir(beir, embedder, "minilm", tmp_path / "cache", mode=mode, k=10)
        assert out["ndcg@10"] == 1.0 and out["queries"] == 2 and out["docs"] == 4, (mode, out)
    again = evaluate_beir(beir, embedder, "minilm", tmp_path / "cache", mode="hybrid", k=10)
    assert again["built"] == {}  # the second run reused both indexes
    bm25 = evaluate_beir(beir, None, "minilm", tmp_path / "fresh", mode="bm25", k=10)  # BM25 embeds nothing
    assert bm25["ndcg@10"] == 1.0 and set(bm25["built"]) == {"bm25_s"}
    with pytest.raises(EternaError, match="--mode: unknown retrieval mode 'sparse'"):
        evaluate_beir(beir, embedder, "minilm", tmp_path / "cache", mode="sparse")
    mixed = evaluate_beir(beir, embedder, "minilm", tmp_path / "cache", mode="dense", k=10, sentence_weight=0.3)
    assert mixed["ndcg@10"] == 1.0 and mixed["sentence_weight"] == 0.3 and "sentences_s" in mixed["built"]
    assert (Path(mixed["cache"]) / "sentences.npy").is_file()  # the engine's search: documents ranked by sentences too
    again = evaluate_beir(beir, embedder, "minilm", tmp_path / "cache", mode="dense", k=10, sentence_weight=0.3)
    assert again["built"] == {}  # the sentence vectors were reused too


class _Worst:
    """A registered mode that ranks the dense search backwards: it must show up in `--mode all`, scored."""

    uses = frozenset({"dense"})

    def search(self, index, text, vector, k, scope=None):
        return index.search_vector(vector, len(index.chunks), scope)[::-1][:k]


def test_a_registered_mode_is_evaluated_by_eval_retrieval_all(beir, tmp_path, capsys):
    from app.cli import main
    from retrieval.retriever import MODES
    from tests.conftest import write_project

    cfg = write_project(tmp_path / "proj", "unused-llm")
    MODES.add("worst", lambda spec: _Worst())
    try:
        assert main(["--config", str(cfg), "eval", "retrieval", "--beir", str(beir), "--mode", "all", "--json"]) == 0
    finally:
        del MODES["worst"]
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"dense", "bm25", "hybrid", "worst"}
    assert out["dense"]["ndcg@10"] == 1.0 and out["worst"]["ndcg@10"] < 0.5 and out["worst"]["queries"] == 2


def test_bad_beir_folders_name_the_file(tmp_path, beir):
    with pytest.raises(EternaError, match="no corpus.jsonl"):
        read_beir(tmp_path, "test")
    with pytest.raises(EternaError, match="dev.tsv: missing"):
        read_beir(beir, "dev")


def test_index_generation_carries_bm25_and_hybrid_search_honours_scope(tiny_corpus, embedder, tmp_path):
    import shutil

    from retrieval.index import LoreIndex, read_current
    from retrieval.rebuild import rebuild_index
    from retrieval.types import Scope

    rebuild_index(tiny_corpus, tmp_path / "index", embedder)
    lore = LoreIndex.open(tmp_path / "index", embedder)
    assert lore.lexical is not None and lore.lexical.n_docs == len(lore.chunks)
    q = "Who set the Fire of 1731?"
    qvec = embedder.encode([q])[0]
    early = HybridRetriever().search(lore, q, qvec, 4, Scope(npc="director", chapter=1))
    assert early and all(h.chunk.chapter <= 1 for h in early)  # the chapter-3 truth never ranks in chapter 1
    late = HybridRetriever().search(lore, q, qvec, 4, Scope(npc="director", chapter=3))
    assert "the-fire-truth" in {h.chunk.doc for h in late}
    for h in late:  # scores stay dense cosines
        assert h.score == pytest.approx(float(lore.index.reconstruct(lore.chunks.index(h.chunk)) @ qvec), abs=1e-5)
    shutil.rmtree(read_current(tmp_path / "index") / "bm25")  # a generation from before BM25: dense search
    (read_current(tmp_path / "index") / "checksums.json").unlink()  # (those had no checksums either)
    old = LoreIndex.open(tmp_path / "index", embedder)
    assert old.lexical is None
    fallback = HybridRetriever().search(old, q, qvec, 4)
    assert [h.chunk.id for h in fallback] == [h.chunk.id for h in old.search_vector(qvec, 4)]


def test_eval_retrieval_cli_prints_every_mode_side_by_side(beir, tmp_path, capsys):
    from app.cli import main
    from tests.conftest import write_project

    cfg = write_project(tmp_path / "proj", "unused-llm")
    assert main(["--config", str(cfg), "eval", "retrieval", "--beir", str(beir), "--mode", "all", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"dense", "bm25", "hybrid"}
    assert all(out[m]["ndcg@10"] == 1.0 and out[m]["queries"] == 2 for m in out)
    assert out["hybrid"]["weight"] == 0.5 and (tmp_path / "proj" / "cache" / "beir").is_dir()  # under the project


def test_tune_on_chooses_the_weight_on_another_split(beir, tmp_path, capsys):
    from app.cli import main
    from tests.conftest import write_project

    (beir / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    cfg = str(write_project(tmp_path / "proj", "unused-llm"))
    assert main(["--config", cfg, "eval", "retrieval", "--beir", str(beir), "--tune-on", "dev", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    grid = out["tuned"]["ndcg@10_by_weight"]
    assert out["tuned"]["split"] == "dev" and len(grid) == 11 and out["weight"] == out["tuned"]["weight"]
    assert grid[str(out["weight"])] == max(grid.values())
    assert main(["--config", cfg, "eval", "retrieval", "--beir", str(beir), "--tune-on", "test"]) == 2
    assert "tune on another split" in capsys.readouterr().err
