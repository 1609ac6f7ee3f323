"""The fourth world, Tallis Junction (an 1894 railway town, a bare cast with four actions), on the real default
models: its fact questions answered from its own lore, and its players' requests turned into actions with
arguments in the parameters' units ("a quarter of an hour" is 15 minutes), while the hard negatives act on nothing."""

import pytest

from app.evaluation.actions import actions_report, load_action_items
from app.evaluation.facts import facts_report, load_fact_items
from tests.conftest import REPO, shipped_world_engine

pytestmark = pytest.mark.slow

EVAL = REPO / "corpora" / "ridge" / "eval"


@pytest.fixture(scope="module")
def engine(tmp_path_factory, embedder):
    return shipped_world_engine(tmp_path_factory.mktemp("ridge"), embedder, "ridge.yaml")


def test_fourth_world_fact_questions(engine):
    report = facts_report(engine, load_fact_items(EVAL / "facts.jsonl")[:20], keep_items=True)
    assert report["spoiler_leaks"] == 0 and report["acted"] == 0
    assert report["contains_gold"] >= 0.85, [r["question"] for r in report["items"] if not r["contains_gold"]]


def test_fourth_world_actions_and_hard_negatives(engine):
    report = actions_report(engine, load_action_items(EVAL / "actions.jsonl"), keep_items=True)
    missed = [(r["text"], r["expect"], r["actions"], r["flags"]) for r in report["items"]]  # (shown on failure)
    assert report["precision"] >= 0.95 and report["recall"] >= 0.9 and report["args_exact"] >= 0.9, missed
    assert report["correct_refusals"] == 1.0 and report["correct_asks"] >= 0.85, missed
    negatives = actions_report(engine, load_action_items(EVAL / "actions_negatives.jsonl"))
    assert negatives["n_returned_actions"] <= 1 and negatives["no_action_correct"] >= 0.8


def test_a_length_of_time_and_a_quoted_message_reach_the_game(engine):
    r = engine.say("stationmaster", "I need the Night Mail held back for a quarter of an hour.",
                   state={"rep": {"company": 3}}, remember=False)
    assert r.actions == [{"name": "hold_train", "args": {"train": "Night Mail", "minutes": 15}}]
    r = engine.say("telegrapher", "Send a wire saying 'all is forgiven, come home.'", remember=False)
    assert r.actions == [] and "action_incomplete:send_telegram" in r.flags  # the quote is no recipient
