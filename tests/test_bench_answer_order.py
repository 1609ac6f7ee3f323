"""The answer-order benchmark's proximity rule (benchmarks/bench_answer_order.py) on hand-made sentences."""

import importlib.util
from pathlib import Path

import pytest

from app.cues import Cues
from app.grounding import EvidenceSelector

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_answer_order.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_answer_order", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def selector():
    return EvidenceSelector(None, Cues.load())  # entities and answer types need no embedder


def test_a_number_next_to_the_questions_noun_scores_highest(bench, selector):
    q = "How many benches stand in the yard?"
    near = bench.proximity(selector, q, "The yard holds 4 benches of green oak.")
    far = bench.proximity(selector, q, "In 1702 a carpenter from the coast, old and slow, made the benches.")
    assert near == 1.0
    assert 0 < far < near


@pytest.mark.parametrize("question, sentence", [
    # no number at all: nothing of the asked type
    ("How many benches stand in the yard?", "The benches are green and stand in a row."),
    # a number, but none of the question's words near it
    ("How many benches stand in the yard?", "There are 4 lamps above the gate."),
    # a number next to the question's word, but the question already says it
    ("Do 4 benches stand in the yard?", "The yard has benches, and the benches are 4."),
])
def test_no_typed_answer_near_the_questions_words_scores_zero(bench, selector, question, sentence):
    assert bench.proximity(selector, question, sentence) == 0.0


def test_a_who_question_wants_a_name_not_a_number(bench, selector):
    q = "Who built the great clock?"
    assert bench.proximity(selector, q, "The clock was built by Oriol Santpere.") > 0.5
    assert bench.proximity(selector, q, "The clock was built in 1702.") == 0.0
