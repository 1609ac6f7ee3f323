"""Reply quality metrics on hand-made replies (good ones and ones that must fail), and fluency on a tiny real model."""

import math

import pytest

from app.evaluation.quality import (
    answer_first,
    breaks,
    clean,
    clean_problems,
    fluency,
    in_voice,
    invented_specifics,
    repeats,
    signature_hits,
    signature_phrases,
    summarise,
    word_count,
)

GOOD = [
    "Halt. The east stair is closed after dark, reader. Move along, reader.",
    ("For the record: the first stone was laid on 3 May 1387 by the mason Íñigo de Varo. The first reading room "
     "opened four years later. Filed and noted."),
    "Psst! Nobody gets into the sealed wing, not even me. Want a sweet? No promises, mind.",
    "The lamps gutter in the draught. Somewhere above, a door closes. The pages turn.",
]
LOOPING = [
    "No, no, no, no, no.",
    "Halt. Walked? No. Walked? No. Walked? No. Move along, reader.",
    "Proper proper good. ... Proper good ones. Proper good ones.",
    "I'm sorry, I'm just going to say, I'm sorry, I'm just going to say",
    "Halt. Halt. Move along.",
]


def test_word_count():
    assert word_count("Halt. Move along, reader.") == 4
    assert word_count("") == 0


@pytest.mark.parametrize("text", LOOPING)
def test_repeats_catches_loops(text):
    assert repeats(text)


@pytest.mark.parametrize("text", GOOD)
def test_repeats_passes_normal_replies(text):
    assert not repeats(text)


def test_answer_first():
    golds = ["3 May 1387"]
    assert answer_first("The first stone was laid on 3 May 1387. It rained.", golds)
    assert not answer_first("It rained that spring. The first stone was laid on 3 May 1387.", golds)
    assert answer_first("It was laid by the mason. ", ["The Mason!"])  # SQuAD normalisation: case, punctuation, a/the
    assert not answer_first("Masonry was old.", ["mason"])  # containment is by whole words
    # a voice marker is not the first sentence when it is given as an opener
    assert not answer_first("Halt. The gate shuts at nine, reader.", ["nine"])
    assert answer_first("Halt. The gate shuts at nine, reader.", ["nine"], openers=["Halt.", "At ease."])
    assert not answer_first("Nothing here.", [])


@pytest.mark.parametrize("text, problem", [
    ("**For the record:** the gate shuts at nine.", "emphasis"),
    ("The gate:\n- shuts at nine\n- opens at six.", "list item"),
    ("| gate | time |\n| east | nine |", "table"),
    ("The gate <br> shuts at nine.", "HTML"),
    ("The tower is old. which rises above the sea.", "fragment"),
    ("rises above the sea, they say.", "fragment"),
    ("The gate shuts at nine and", "unterminated"),
    ("He said “the gate shuts at nine.", "unbalanced"),
    ('He said "the gate shuts at nine.', "unbalanced"),
    ("The gate (east shuts at nine.", "unbalanced"),
])
def test_clean_fails_on_markup_and_fragments(text, problem):
    assert not clean(text)
    assert any(problem in p for p in clean_problems(text)), clean_problems(text)


@pytest.mark.parametrize("text", GOOD)
def test_clean_passes_prose(text):
    assert clean(text), clean_problems(text)
    assert clean_problems(text) == []


CAST = {"name": "Captain Orsino Vell", "other_names": ["Mira Sable", "The Old Chronicle"],
        "foreign_words": ["laser", "spaceship", "Wi-Fi"]}


@pytest.mark.parametrize("text, problem", [
    ("As an AI, I cannot guard doors.", "AI talk"),
    ("I am a large language model trained by OpenAI.", "AI talk"),
    ("I'm just a program, reader.", "AI talk"),
    ("I am an assistant here to help.", "AI talk"),
    ("ChatGPT says hello.", "AI talk"),
    ("My name is Captain Elianor, the Librarian of the Night.", "claims another name: 'Captain Elianor'"),
    ("Call me Mira, everyone does.", "claims another name: 'Mira'"),
    ("I am Sable, and I keep the records.", "claims another name: 'Sable'"),
    ("Halt. Check your LASER at the door.", "foreign word: 'laser'"),
    ("The wi-fi is down, reader.", "foreign word: 'Wi-Fi'"),
])
def test_breaks_catches_broken_character(text, problem):
    problems = breaks(text, **CAST)
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize("text", [
    "Halt. I am Captain Vell, and this door is mine. Move along, reader.",
    "Call me Orsino. I'm not sure, reader. I am tired.",
    "My name is Vell. The lasers of the lighthouse? Never heard of them.",  # whole words only
    "The old program of the guard is to walk the stair at nine.",
])
def test_breaks_passes_in_character_replies(text):
    assert breaks(text, **CAST) == []


def test_invented_specifics():
    allowed = ("Captain Orsino Vell guards the Lantern Gate. The mason Inigo de Varo built it in 1387 with "
               "twelve men. Mira Sable's ledger lists 3,000 coins.")
    reply = ("Íñigo de Varo built the gate in 1387 with 12 men; Mira's ledger says 3,000 coins. On Monday in May "
             "I met Pedro Salazar at the gate, and 40 coins were lost. Sir, the Lantern Gate is old.")
    assert invented_specifics(reply, allowed) == ["Pedro Salazar", "40"]
    assert invented_specifics("The captain is here.", allowed) == []
    assert invented_specifics("It cost seventeen coins.", allowed) == ["seventeen"]
    assert invented_specifics("Ask Orsino Vell at the Gate.", allowed) == []
    # capitalised after a stage direction, an interjection or "You're" names no one; a name there still counts
    assert invented_specifics("(laughs) Ah, no worries. (pauses) You’re right. (nods) Pedro agrees.", allowed) == \
        ["Pedro"]


STYLE_WARDEN = ('Terse, clipped military speech. Addresses the player as "reader". Starts with "Halt." or '
                "'At ease.' and ends with “Move along, reader.”")
STYLE_TRADER = "Fast patter. Opens with «Deal or no deal?», calls the player friend, never haggles twice."
STYLE_BOOK = 'Archaic. Speaks of itself as "we", uses "thee" and "thou", and ends every reply with "So it is."'


def test_signature_phrases_from_style_texts():
    assert signature_phrases(STYLE_WARDEN) == ["reader", "Halt.", "At ease.", "Move along, reader."]
    assert signature_phrases(STYLE_TRADER) == ["Deal or no deal?", "friend"]
    assert signature_phrases(STYLE_BOOK) == ["thee", "thou", "So it is."]  # "we" would match any reply
    assert signature_phrases("Calm and clinical. Short, gentle sentences. The player's pulse matters.") == []
    assert signature_phrases("") == []


def test_signature_hits_and_in_voice():
    phrases = signature_phrases(STYLE_WARDEN)
    assert signature_hits("HALT! The stair is shut. Move along reader", phrases) == 3  # halt, reader, move along...
    assert signature_hits("At ease. Nothing to report.", phrases) == 1
    assert signature_hits("Halting is not allowed. Readers go home.", phrases) == 0  # whole words only
    assert in_voice("Halt. The stair is shut after dark. Move along, reader.", phrases)
    assert not in_voice("The stair is shut after dark.", phrases)
    # markers present but looping: never in voice
    looping = "Halt. Walked? No. Walked? No. Walked? No. Move along, reader."
    assert signature_hits(looping, phrases) >= 2 and not in_voice(looping, phrases)


def test_summarise():
    rows = [{"words": 10, "repeats": False, "clean": True, "problems": [], "fluency": -3.0, "npc": "a"},
            {"words": 20, "repeats": True, "clean": False, "problems": ["HTML tag"], "fluency": None, "npc": "b"},
            {"words": 30, "repeats": False, "clean": True, "problems": [], "fluency": -5.0, "npc": "a"},
            {"words": 40, "repeats": False, "clean": True, "problems": [], "npc": "b"}]
    s = summarise(rows)
    assert s["n"] == 4
    assert s["words_median"] == 25 and s["words_p90"] == 37
    assert s["repeats_rate"] == 0.25 and s["clean_rate"] == 0.75 and s["problems_rate"] == 0.25
    assert s["fluency_median"] == -4.0 and s["fluency_n"] == 2
    assert "npc_rate" not in s and "words_n" not in s
    assert summarise([]) == {"n": 0}


@pytest.fixture(scope="module")
def tiny_lm(tiny_llm_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    model.eval()
    return model, AutoTokenizer.from_pretrained(tiny_llm_dir)


def test_fluency_mechanics_on_a_tiny_model(tiny_lm):
    model, tok = tiny_lm
    normal = "The old gate at the top of the east stair is shut every night at nine, and the keys hang by the door."
    gibberish = "zq zq zq zq zq zq zq zq zq zq zq zq zq zq zq zq zq zq zq zq zq zq zq zq zq zq"
    texts = [normal, "Halt.", gibberish, ""]
    scores = fluency(texts, model, tok, length=16, batch_size=2)
    assert len(scores) == 4
    assert scores[1] is None and scores[3] is None  # shorter than 16 tokens
    assert all(isinstance(s, float) and math.isfinite(s) and s < 0 for s in (scores[0], scores[2]))
    assert scores[0] != scores[2]
    # batched or alone, a text gets the same score; only the first `length` tokens count
    alone = fluency([normal], model, tok, length=16)[0]
    assert alone == pytest.approx(scores[0], abs=1e-4)
    assert fluency([normal + " And then more words follow, many more."], model, tok)[0] == pytest.approx(alone,
                                                                                                         abs=1e-4)
    assert fluency([], model, tok) == []
    with pytest.raises(ValueError):
        fluency([normal], model, tok, length=0)


def test_ab_metrics_see_loops_that_markers_miss():
    """The A/B registry's voice metric: a looping reply with both markers passes `voice_markers` (what fooled the
    report before) and fails `in_voice`; `repeats` and `clean_text` flag it and a markdown reply."""
    from app.config import Markers
    from app.evaluation.ab import Context
    from app.evaluation.metrics import METRICS

    markers = {"guard": Markers(opens=["Halt."], closes=["Move along, reader."])}
    ctx = Context(cues=None, markers=markers, selector=None, phrases={"guard": ["Halt.", "Move along, reader."]})
    item = {"npc": "guard", "set": "style", "text": "Evening."}
    looping = {"text": "Halt. Walked? No. Walked? No. Walked? No. Move along, reader.", "tokens": {"reply": 20}}
    good = {"text": "Halt. The stair is shut at dusk. Move along, reader.", "tokens": {"reply": 14}}
    m = {name: METRICS.lookup(name).fn for name in ("voice_markers", "in_voice", "repeats", "clean_text",
                                                    "answer_first")}
    assert m["voice_markers"](looping, item, ctx) == 1.0  # markers alone call it in voice
    assert m["in_voice"](looping, item, ctx) == 0.0 and m["repeats"](looping, item, ctx) == 1.0
    assert m["in_voice"](good, item, ctx) == 1.0 and m["repeats"](good, item, ctx) == 0.0
    assert m["in_voice"]({**good, "tokens": {}}, item, ctx) is None  # no model generated it: not its voice
    assert m["clean_text"]({"text": "- **The Crook** — the m"}, item, ctx) == 0.0
    fact = {"npc": "guard", "set": "facts", "answers": ["1387"], "in_scope": True}
    assert m["answer_first"]({"text": "Halt. It was founded in 1387. Move along, reader."}, fact, ctx) == 1.0
    assert m["answer_first"]({"text": "Halt. It is old. It was founded in 1387."}, fact, ctx) == 0.0
