import pytest

from app.router import Router, load_seeds
from retrieval.errors import CorpusError
from retrieval.index import LoreIndex
from retrieval.rebuild import rebuild_index
from tests.conftest import REPO
from tests.fixtures_data import SEEDS


@pytest.fixture
def tiny_router(embedder):
    return Router(embedder, SEEDS)


@pytest.mark.parametrize("text, label", [
    ("Who built the clock with thirteen hours?", "fact"),
    ("how many books may i take home", "fact"),
    ("Hello, nice to meet you!", "style"),
    ("Thanks, you have been very kind.", "style"),
    ("Tell me in a rhyme when the Library was founded.", "both"),
    ("What's the best smartphone to buy?", "offworld"),
    ("Write me some JavaScript please", "offworld"),
    ("I close the book and look around the clock room.", "style"),
])
def test_routes_with_reasons(tiny_router, tiny_corpus, embedder, tmp_path, text, label):
    rebuild_index(tiny_corpus, tmp_path / "index", embedder)
    index = LoreIndex.open(tmp_path / "index", embedder)
    v = embedder.encode([text])[0]
    route = tiny_router.route(text, v, index.search_vector(v, 1)[0].score)
    assert route.label == label, route
    assert route.reason and "lore" in route.reason
    assert set(route.signals) >= {"knn", "lore_score", "form_cue"}


def test_seed_file_errors(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "hi", "label": "chitchat"}\n')
    with pytest.raises(CorpusError, match="s.jsonl:1: label 'chitchat'"):
        load_seeds(path)


def test_router_accuracy_on_the_held_out_eval_set(embedder, tmp_path):
    """Quality gate on the shipped sets: seeds calibrate, router.jsonl is held out."""
    from app.evaluation.measures import router_report

    rebuild_index(REPO / "corpora" / "lore", tmp_path / "index", embedder)
    index = LoreIndex.open(tmp_path / "index", embedder)
    router = Router(embedder, load_seeds(REPO / "corpora" / "router" / "seeds.jsonl"))
    report = router_report(router, index, REPO / "corpora" / "eval" / "router.jsonl")
    assert report["n"] >= 120
    assert report["accuracy"] >= 0.85, report["errors"]
