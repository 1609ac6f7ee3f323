"""The second world, Kestrel Station, on the real default models: a world of another genre works by pointing the
config at its folders, with fact answers from its own lore, no spoilers, and "I do not know" where it must."""

import pytest

from app.evaluation.facts import facts_report, load_fact_items
from tests.conftest import REPO, shipped_world_engine

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine(tmp_path_factory, embedder, shared_models):
    return shipped_world_engine(tmp_path_factory.mktemp("kestrel"), embedder, models=shared_models)


def test_kestrel_fact_questions(engine):
    items = load_fact_items(REPO / "corpora" / "kestrel" / "eval" / "facts.jsonl")
    report = facts_report(engine, items[:20] + items[50:], keep_items=True)
    assert report["n_in_scope"] == 20 and report["n_out_of_scope"] == 16
    assert report["spoiler_leaks"] == 0
    assert report["contains_gold"] >= 0.6, [r["question"] for r in report["items"] if r["in_scope"]
                                            and not r["contains_gold"]]
    assert report["idk_correct"] >= 0.75
    extracted = [r for r in report["items"] if r["answer"] == "extracted"]
    assert extracted and all(r["text"].startswith(("Right, listen.", "Manifest says:", "Breathe for me.",
                                                    "Playback.")) or r["npc"] == "director" for r in extracted)


def test_kestrel_voices_wrap_extracted_answers(engine):
    reply = engine.say("engineer", "Who built the station's fusion reactor?")
    assert reply.route == "fact"
    assert reply.text.startswith("Right, listen.")
    # the sign-off closes a reply within grounding.closer_within words, and only such a reply
    within = engine.config.grounding.closer_within
    assert reply.text.endswith("Torque it and trust it.") is (len(reply.text.split()) <= within), reply.text
    engine.config = engine.config.model_copy(update={"grounding": engine.config.grounding.model_copy(
        update={"closer_within": None})})
    try:
        again = engine.say("engineer", "Who built the station's fusion reactor?", session="closer")
        assert again.text.endswith("Torque it and trust it.")
    finally:
        engine.config = engine.config.model_copy(update={"grounding": engine.config.grounding.model_copy(
            update={"closer_within": within})})
