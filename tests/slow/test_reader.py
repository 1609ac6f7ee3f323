"""The shipped answer reader on the real default models: through a development world's engine, fact replies in the
reader's order are shorter than the rank order's and still carry the gold answer, said first. (The reader was trained
on the development worlds' questions, these among them: its figures on worlds it never saw come from
benchmarks/bench_reader.py and the sealed world, docs/benchmarks.md.)"""

import pytest

from app.evaluation.facts import facts_report, load_fact_items
from tests.conftest import REPO, shipped_world_engine

pytestmark = pytest.mark.slow


def test_reader_order_says_the_answer_first_in_fewer_words(tmp_path, embedder, shared_models):
    engine = shipped_world_engine(tmp_path, embedder, "kestrel.yaml", models=shared_models)
    items = load_fact_items(REPO / "corpora" / "kestrel" / "eval" / "facts.jsonl")[:24]
    reports = {}
    for order in ("rank", "reader"):
        engine.config = engine.config.model_copy(update={"grounding": engine.config.grounding.model_copy(
            update={"answer_order": order, "closer_within": None})})  # (the orders' lengths, sign-off and all)
        reports[order] = facts_report(engine, items)
    rank, reader = reports["rank"], reports["reader"]
    assert reader["contains_gold"] >= rank["contains_gold"] - 0.05, (rank, reader)
    assert reader["answer_first"] > rank["answer_first"], (rank, reader)
    assert reader["words_p50"] < rank["words_p50"] - 5, (rank, reader)
    assert reader["spoiler_leaks"] == 0 and reader["clean"] == 1.0
