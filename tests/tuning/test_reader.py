"""The answer reader (tuning/reader.py, app/reader.py): a LoRA cross-encoder on the real default embedder, trained on
a few questions here, loaded merged, and used by a fact reply's extract."""

import json

import pytest

from app.config import EternaConfig, GroundingConfig
from app.cues import Cues
from app.grounding import Evidence, EvidenceSelector, GroundingPolicy
from app.reader import CrossEncoderReader, load_reader, resolve_reader
from retrieval.embeddings import resolve_embedder
from retrieval.errors import EternaError, ModelNotFoundError
from tuning.adapters import ADAPTER_MANIFEST
from tuning.reader import ReaderRecipe, train_reader, useful

SPEC = "builtin:all-minilm-l6-v2"
TOPIC = ("The Clock", "The clock is the pride of the hall and everyone admires it.")
ROWS = [
    {"question": "Who built the clock?", "gold": [False, True, False],
     "candidates": [list(TOPIC), ["The Clock", "It was built by the clockmaker Oriol Santpere."],
                    ["Benches", "Readers sit on green benches."]]},
    {"question": "How many hours are on the clock's face?", "gold": [False, False, True],
     "candidates": [list(TOPIC), ["Benches", "There are four benches."],
                    ["The Clock", "Its face shows thirteen hours."]]},
    {"question": "When does the clock strike?", "gold": [False, True, False],
     "candidates": [list(TOPIC), ["The Clock", "It strikes thirteen times at dusk."],
                    ["Lending", "Books return within 21 days."]]},
    {"question": "How long may a book be kept?", "gold": [False, True],
     "candidates": [["Lending", "Lending is a privilege of readers."], ["Lending", "Books return within 21 days."]]},
    {"question": "Who is paid the late fee?", "gold": [True, False],
     "candidates": [["Lending", "A late book costs one silver, paid to the Head Archivist."], list(TOPIC)]},
    {"question": "What is the weather?", "gold": [False, False], "candidates": [list(TOPIC), list(TOPIC)]},
]


@pytest.fixture(scope="module")
def reader_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("reader") / "reader"
    recipe = ReaderRecipe(r=4, alpha=8, epochs=6, accumulate=1, learning_rate=2e-3, threads=1)
    train_reader(ROWS, resolve_embedder(SPEC), out, recipe, base_spec=SPEC, sources={"worlds": ["test"]},
                 log=lambda msg: None)
    return out


def _rank_first(reader, rows) -> float:
    hits = 0
    for r in rows:
        s = reader.scores(r["question"], [tuple(c) for c in r["candidates"]])
        hits += r["gold"][max(range(len(s)), key=s.__getitem__)]
    return hits / len(rows)


def test_training_publishes_a_reader_with_its_manifest_and_learns_its_rows(reader_dir):
    m = json.loads((reader_dir / ADAPTER_MANIFEST).read_text())
    assert m["kind"] == "reader" and m["built_by"] == "eterna train reader" and m["base"]["spec"] == SPEC
    assert m["data"] == {"worlds": ["test"], "questions": 6, "trained_on": 5}  # the weather row teaches nothing
    assert m["metrics"]["epoch_loss"][-1] < m["metrics"]["epoch_loss"][0] / 2
    assert not list(reader_dir.parent.glob(".reader.reader-*"))  # no staging folder left
    # the base is named as any machine finds it, not by this one's path
    assert json.loads((reader_dir / "adapter_config.json").read_text())["base_model_name_or_path"] == SPEC
    assert _rank_first(CrossEncoderReader(reader_dir), useful(ROWS)) == 1.0


def test_the_merged_reader_scores_as_the_trained_adapter(reader_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer

    from tuning.reader import candidate_text, load_model, score_pairs

    peft = PeftModel.from_pretrained(load_model(resolve_embedder(SPEC)), str(reader_dir)).eval()
    tok = AutoTokenizer.from_pretrained(str(reader_dir))
    reader = CrossEncoderReader(reader_dir)
    for r in ROWS:
        with torch.no_grad():
            want = score_pairs(peft, tok, r["question"], [candidate_text(t, s, False) for t, s in r["candidates"]],
                               128).tolist()
        assert reader.scores(r["question"], [tuple(c) for c in r["candidates"]]) == pytest.approx(want, abs=1e-4)


def test_a_fact_reply_says_the_readers_sentence_first_and_alone_when_both_judges_agree(reader_dir, embedder):
    from app.config import NpcSpec

    row, gold = ROWS[0], "It was built by the clockmaker Oriol Santpere."
    # the other two sentences name someone too, so either could still hold the answer to "who" (adds_nothing)
    texts = [f"{TOPIC[1][:-1]}, Abbot Ferran most of all.", gold, "Abbot Ferran gave the hall its green benches."]

    def evidence(order):  # in the selection's rank order, as a turn passes it
        return [Evidence(texts[j], f"c{j}", "d", row["candidates"][j][0], 1.0 - 0.01 * i)
                for i, j in enumerate(order)]

    def policy(**g):
        grounding = GroundingConfig(**{"answer_order": "reader", "reader": str(reader_dir), "reader_weight": 0.0,
                                       **g})
        return GroundingPolicy(EternaConfig(grounding=grounding), EvidenceSelector(embedder, Cues.load()),
                               Cues.load(), None)

    npc = NpcSpec(id="x", name="X", role="npc", persona="x", style="plain", knows="all")
    topic_first = evidence([0, 1, 2])
    ordered, sure = policy().read(row["question"], topic_first)
    assert ordered[0].text == gold and {e.text for e in ordered} == {e.text for e in topic_first}
    assert not sure  # the selection ranked another sentence first, and the next one names someone: both are said
    said = policy(reader_alone=0.01).extract(npc, topic_first, row["question"])
    assert said == f"{gold} {ordered[1].text}"
    gold_first = evidence([1, 0, 2])
    assert policy(reader_alone=0.01).extract(npc, gold_first, row["question"]) == gold  # both agree: alone
    assert policy(reader_alone=None).extract(npc, gold_first, row["question"]).startswith(f"{gold} ")
    # a question of a type (when, how many) is not answered alone by a sentence without a name or number of it,
    # however sure the reader and the selection are (the selection's order kept by a large weight)
    sure_order = policy(reader_alone=0.01, reader_weight=1000.0)
    when = "When was the clock built?"
    built = Evidence("It was built in 1712 by the clockmaker Oriol Santpere.", "c9", "d", "The Clock", 0.9)
    topic = Evidence(TOPIC[1], "c0", "d", TOPIC[0], 1.0)
    assert sure_order.read(when, [topic, built]) == ([topic, built], False)
    assert sure_order.extract(npc, [topic, built], when) == f"{TOPIC[1]} {built.text}"
    hours = Evidence("Its face shows thirteen hours.", "c2", "d", "The Clock", 1.1)
    benches = Evidence("Readers sit on green benches.", "c5", "d", "Benches", 0.9)
    assert sure_order.read("How many hours are on the clock's face?", [hours, benches]) == ([hours, benches], True)
    assert sure_order.read("Is the clock admired?", [topic, benches]) == ([topic, benches], True)  # no type asked
    # nor when the next sentence goes on from another one ("Its ...", "It ...", "They ...")
    small = Evidence("A second dish of 9 metres sits on the mast.", "c3", "d", "Dishes", 1.0)
    for goes_on in ("Its reflector is 64 metres across.", "It was finished in 2374.", "‘They measure it at 70 m.’"):
        nxt = Evidence(goes_on, "c4", "d", "Dishes", 0.9)
        assert sure_order.read("How big across is the dish?", [small, nxt]) == ([small, nxt], False), goes_on
    ear = Evidence("‘They call it the Ear.’", "c4", "d", "Dishes", 0.9)  # ... unless it adds no number (below)
    assert sure_order.read("How big across is the dish?", [small, ear]) == ([small, ear], True)
    items = Evidence("Items of 64 metres are rare.", "c4", "d", "Dishes", 0.9)  # a word that only starts so
    assert sure_order.read("How big across is the dish?", [small, items]) == ([small, items], True)
    # however unsure the reader, the best sentence is said alone when it holds a name or number of the asked type
    # and the next one adds none it lacks: the next could not hold the answer
    unsure = policy(reader_alone=None, reader_weight=1000.0)
    climbs = Evidence("The road climbs to 9,300 feet at the Skarn Saddle.", "c6", "d", "The Pass", 1.0)
    again = Evidence("Every traveller is warned that the saddle stands at 9,300 feet.", "c7", "d", "The Pass", 0.9)
    lower = Evidence("The old mule road crossed lower, at 8,100 feet.", "c8", "d", "The Pass", 0.9)
    high = "How high is the saddle?"
    assert unsure.read(high, [climbs, again]) == ([climbs, again], True)
    assert unsure.extract(npc, [climbs, again], high) == climbs.text
    assert unsure.read(high, [climbs, lower]) == ([climbs, lower], False)  # another height: it may be the answer
    second = Evidence(climbs.text, "c6", "d", "The Pass", 0.8)
    assert unsure.read(high, [topic, second]) == ([topic, second], False)  # the first holds no number
    assert unsure.read("Is the saddle cold?", [climbs, again]) == ([climbs, again], False)  # no type asked
    # the reader reads up to reader_candidates sentences, more than the reply says: an answer third in the
    # selection's order comes first; read only as far as extract_sentences, it cannot
    row3 = ROWS[1]
    three = [Evidence(t, f"c{j}", "d", title, 1.0 - 0.01 * j) for j, (title, t) in enumerate(row3["candidates"])]
    said = policy(reader_candidates=5).said(row3["question"], three)
    assert said[0].text == "Its face shows thirteen hours." and len(said) == 2
    assert "Its face shows thirteen hours." not in [e.text for e in policy(reader_candidates=1).said(
        row3["question"], three)]
    assert policy(reader_candidates=5).extract(npc, said, row3["question"], chosen=True) == " ".join(
        e.text for e in said)  # chosen: said as given, not read again
    # the rank order, unchanged, when asked for (the reader is the default)
    assert GroundingConfig().answer_order == "reader"
    rank = GroundingPolicy(EternaConfig(grounding=GroundingConfig(answer_order="rank")),
                           EvidenceSelector(embedder, Cues.load()), Cues.load(), None)
    assert rank.extract(npc, topic_first, row["question"]) == f"{texts[0]} {gold}"


def test_an_aside_is_cut_only_where_the_reader_still_finds_the_answer(reader_dir, embedder):
    from app.config import NpcSpec

    npc = NpcSpec(id="x", name="X", role="npc", persona="x", style="plain", knows="all")
    question = "Who built the clock?"
    whole = "It was built by the clockmaker Oriol Santpere, working from 1612 to 1615, and it strikes thirteen at dusk."
    shortest = "It was built by the clockmaker Oriol Santpere."
    ev = [Evidence(whole, "c1", "d", "The Clock", 1.0)]

    def policy(**g):
        grounding = GroundingConfig(**{"answer_order": "rank", "reader": str(reader_dir), **g})
        return GroundingPolicy(EternaConfig(grounding=grounding), EvidenceSelector(embedder, Cues.load()),
                               Cues.load(), None)

    assert policy(asides="keep").extract(npc, ev, question) == whole
    assert policy(asides_margin=1000.0).extract(npc, ev, question) == shortest  # any cut passes: the shortest
    # at margin 0 a cut is said only if the reader scores it at least as high as the whole sentence
    reader = load_reader(str(reader_dir))
    said = policy(asides_margin=0.0).extract(npc, ev, question)
    assert said in (whole, shortest, "It was built by the clockmaker Oriol Santpere, working from 1612 to 1615.")
    full, got = reader.scores(question, [("The Clock", whole), ("The Clock", said)])
    assert got >= full - 1e-3  # batch padding moves a logit in its last digits
    # the evidence a turn reports keeps the whole sentence: only what is said is cut
    assert policy(asides_margin=1000.0).without_asides(question, ev[0]).text == shortest and ev[0].text == whole
    # nothing asked is cut away: the name a "who" question asks for stays, however far the margin
    late = Evidence("The clock, a gift of the city, was built in 1612 by Oriol Santpere, working alone.", "c2",
                    "d", "The Clock", 1.0)
    assert policy(asides_margin=1000.0).extract(npc, [late], question) == \
        "The clock, a gift of the city, was built in 1612 by Oriol Santpere."
    # a sentence the reader does not find the answer in is said whole, whatever the margin (the shipped reader)
    off = "How long may a book be kept?"
    assert load_reader("builtin:answer-reader").scores(off, [("The Clock", whole)])[0] < 0
    assert policy(asides_margin=1000.0, reader="builtin:answer-reader").extract(npc, ev, off) == whole
    assert policy(asides_margin=1000.0, reader="builtin:answer-reader").extract(npc, ev, question) == shortest


def test_readers_bad_inputs_name_the_fix(tmp_path):
    with pytest.raises(ModelNotFoundError, match="eterna train reader"):
        resolve_reader(tmp_path / "nothing")
    with pytest.raises(ValueError, match="nothing to learn"):
        train_reader([ROWS[-1]], resolve_embedder(SPEC), tmp_path / "r", ReaderRecipe(), base_spec=SPEC,
                     sources={}, log=lambda msg: None)
    assert not (tmp_path / "r").exists()
    # several facts files: a world with none of them is named, with the fix (the config only is read)
    from app.recipes.reader import world_rows
    from tests.conftest import REPO

    with pytest.raises(EternaError, match=r"kestrel\.yaml: none of nope\.jsonl, nada\.jsonl in paths\.eval"):
        world_rows(REPO / "configs" / "kestrel.yaml", ["nope.jsonl", "nada.jsonl"])


def test_the_shipped_reader_loads_and_was_not_trained_on_the_sealed_world():
    folder = resolve_reader("builtin:answer-reader")
    m = json.loads((folder / ADAPTER_MANIFEST).read_text())
    assert m["kind"] == "reader" and m["base"]["spec"] == SPEC
    assert m["data"]["worlds"] and "sealed.yaml" not in m["data"]["worlds"]
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == SPEC
    reader = load_reader("builtin:answer-reader")
    s = reader.scores("Who built the clock?", [tuple(c) for c in ROWS[0]["candidates"]])
    assert max(range(3), key=s.__getitem__) == 1


def test_the_character_does_not_know_when_the_reader_finds_the_answer_only_in_hidden_text(reader_dir, embedder):
    """grounding.hidden_reader: own evidence the reader finds unlikely, and a sentence the character may not see
    that it reads far higher, make "I do not know"; own evidence that reads well, or hidden text that reads no
    better, does not."""
    row = ROWS[0]
    gold = Evidence("It was built by the clockmaker Oriol Santpere.", "c1", "d", "The Clock", 0.5)
    topic = Evidence(TOPIC[1], "c0", "d", TOPIC[0], 1.0)
    benches = Evidence("Readers sit on green benches.", "c5", "d", "Benches", 0.9)
    s_gold, s_topic, s_benches = CrossEncoderReader(reader_dir).scores(
        row["question"], [(e.title, e.text) for e in (gold, topic, benches)])
    assert s_gold > max(s_topic, s_benches)  # the reader learnt its rows

    def policy(**g):  # thresholds between this reader's scores: the rule, not the shipped reader's scale
        grounding = GroundingConfig(**{"answer_order": "reader", "reader": str(reader_dir),
                                       "hidden_reader_own": (s_gold + max(s_topic, s_benches)) / 2,
                                       "hidden_reader": (s_gold - max(s_topic, s_benches)) / 2, **g})
        return GroundingPolicy(EternaConfig(grounding=grounding), EvidenceSelector(embedder, Cues.load()),
                               Cues.load(), None)

    asked = []

    def hidden(*found):
        def search():
            asked.append(1)
            return list(found)
        return search

    assert policy().hidden_reads_better(row["question"], [topic, benches], hidden(gold))
    asked.clear()
    assert not policy().hidden_reads_better(row["question"], [gold, topic], hidden(gold))  # its own reads well
    assert not asked  # ... and then nothing hidden is searched
    assert not policy().hidden_reads_better(row["question"], [topic], hidden(benches))  # reads no better
    assert not policy().hidden_reads_better(row["question"], [topic], hidden())  # nothing hidden
    named = Evidence("The clock is wound by Pere Vidal.", "c6", "d", "The Clock", 0.8)  # a person, as "who" asks
    assert not policy().hidden_reads_better(row["question"], [topic, named], hidden(gold))
    assert GroundingConfig().hidden_reader is not None  # on by default, on the shipped reader's scale
    assert not policy(hidden_reader=None).hidden_reads_better(row["question"], [topic], hidden(gold))
    assert not policy(answer_order="rank").hidden_reads_better(row["question"], [topic], hidden(gold))


def test_the_character_does_not_know_when_the_reader_reads_none_of_its_sentences_as_an_answer(reader_dir, embedder):
    """grounding.reader_floor: evidence whose every sentence the reader reads below the floor is no evidence (the
    character says it does not know); one sentence above it keeps all of it; off, or with another order, nothing
    changes. The scores are computed once for the floor and the order that follows."""
    row = ROWS[0]
    gold = Evidence("It was built by the clockmaker Oriol Santpere.", "c1", "d", "The Clock", 0.5)
    topic = Evidence(TOPIC[1], "c0", "d", TOPIC[0], 1.0)
    benches = Evidence("Readers sit on green benches.", "c5", "d", "Benches", 0.9)
    reader = load_reader(str(reader_dir))
    s_gold, s_topic, s_benches = reader.scores(row["question"], [e.read() for e in (gold, topic, benches)])
    assert s_gold > max(s_topic, s_benches)

    def policy(**g):  # the floor between this reader's scores: the rule, not the shipped reader's scale
        grounding = GroundingConfig(**{"answer_order": "reader", "reader": str(reader_dir),
                                       "reader_floor": (s_gold + max(s_topic, s_benches)) / 2, **g})
        return GroundingPolicy(EternaConfig(grounding=grounding), EvidenceSelector(embedder, Cues.load()),
                               Cues.load(), None)

    assert policy().reads_no_answer(row["question"], [topic, benches])
    assert not policy().reads_no_answer(row["question"], [topic, benches, gold])  # one answers: all of it stays
    assert not policy().reads_no_answer(row["question"], [])
    assert not policy(reader_floor=None).reads_no_answer(row["question"], [topic, benches])
    assert not policy(answer_order="rank").reads_no_answer(row["question"], [topic, benches])
    assert GroundingConfig().reader_floor is not None  # on by default, on the shipped reader's scale
    # the floor's pass and the order's pass that follows are one forward
    calls = []
    forward = reader.model.forward
    reader.model.forward = lambda *a, **k: (calls.append(1), forward(*a, **k))[1]
    try:
        question = row["question"] + " (once)"
        policy().reads_no_answer(question, [topic, benches, gold])
        policy().read(question, [topic, benches, gold])
    finally:
        reader.model.forward = forward
    assert len(calls) == 1


def test_the_hidden_margin_does_not_silence_an_answer_the_reader_is_sure_of(reader_dir, embedder):
    """grounding.hidden_margin_sure: a hidden page that scores better in the selection says "I do not know" (the
    hidden margin), unless the answer reader reads one of the character's own sentences at hidden_margin_sure or
    above (development: "How long may a visit to the Forbidden Wing last?" had been "I do not know" though its own
    lore says it, at a reader logit near 8)."""
    from retrieval.types import Chunk, Hit

    question = ROWS[0]["question"]
    gold = Evidence("It was built by the clockmaker Oriol Santpere.", "c1", "d", "The Clock", -5.0)
    topic = Evidence(TOPIC[1], "c0", "d", TOPIC[0], -5.0)
    s_gold, s_topic = CrossEncoderReader(reader_dir).scores(question, [gold.read(), topic.read()])
    assert s_gold > s_topic
    later = Chunk(id="h#0", doc="h", title="The Clock", kind="history", npc_scope=None, chapter=9, heading="",
                  text="Who built the clock was asked in the hall for a century.", hash="")
    hits, qvec = [Hit(later, 0.9, 0)], embedder.encode([question])[0]

    def policy(sure):
        grounding = GroundingConfig(answer_order="reader", reader=str(reader_dir), hidden_margin_sure=sure)
        return GroundingPolicy(EternaConfig(grounding=grounding), EvidenceSelector(embedder, Cues.load()),
                               Cues.load(), None)

    between = (s_gold + s_topic) / 2
    assert policy(None).hidden_answers_better(question, qvec, gold, hits, [gold, topic])  # the margin alone
    assert not policy(between).hidden_answers_better(question, qvec, gold, hits, [gold, topic])  # sure of its own
    assert not policy(between).hidden_answers_better(question, qvec, topic, hits, [topic, gold])  # any of its five
    assert policy(between).hidden_answers_better(question, qvec, topic, hits, [topic])  # its own reads low
    assert policy(s_gold + 1.0).hidden_answers_better(question, qvec, gold, hits, [gold])  # not sure enough


def test_a_reader_trained_with_context_reads_each_sentence_after_the_one_before_it(tmp_path, embedder):
    """ReaderRecipe.context: a candidate is read as 'sentence << the sentence before it', in training and in a turn
    (Evidence.context, filled by the selection from the chunk), so "She has placed 3,100 animals" has its "She"."""
    from tuning.reader import candidate_text

    assert candidate_text("T", "She has placed 3,100.", False, "Ada runs the shelter.") == \
        "She has placed 3,100. << Ada runs the shelter."
    assert candidate_text("T", "She has placed 3,100.", True, "") == "T: She has placed 3,100."
    rows = [{**r, "candidates": [[t, s, "The hall keeps a clock."] for t, s in r["candidates"]]} for r in ROWS]
    out = tmp_path / "reader"
    train_reader(rows, resolve_embedder(SPEC), out, ReaderRecipe(r=4, alpha=8, epochs=2, accumulate=1,
                                                                 learning_rate=2e-3, threads=1, context=True),
                 base_spec=SPEC, sources={"worlds": ["test"]}, log=lambda msg: None)
    reader = CrossEncoderReader(out)
    assert reader.context and json.loads((out / ADAPTER_MANIFEST).read_text())["recipe"]["context"]
    q, pair = "Who built the clock?", ("The Clock", "It was built by Oriol Santpere.")
    with_context = reader.scores(q, [(*pair, "The hall keeps a clock.")])
    assert with_context != reader.scores(q, [(*pair, "")])  # the context is read
    # the selection gives each sentence the one before it in its chunk
    from app.grounding import EvidenceSelector
    from retrieval.types import Chunk, Hit

    text = "The hall keeps a clock. It was built by Oriol Santpere."
    chunk = Chunk(id="c#0", doc="c", title="The Clock", kind="place", npc_scope=None, chapter=1, heading="",
                  text=text, hash="h")
    ev = EvidenceSelector(embedder, Cues.load()).select(q, embedder.encode([q])[0], [Hit(chunk, 0.9, 0)], 2)
    assert {e.text: e.context for e in ev} == {"The hall keeps a clock.": "",
                                              "It was built by Oriol Santpere.": "The hall keeps a clock."}


def test_the_shipped_context_reader_reads_the_sentence_before_and_was_not_trained_on_the_sealed_world():
    folder = resolve_reader("builtin:answer-reader-context")
    m = json.loads((folder / ADAPTER_MANIFEST).read_text())
    assert m["kind"] == "reader" and m["recipe"]["context"] is True
    assert m["data"]["worlds"] and "sealed.yaml" not in m["data"]["worlds"]
    reader = load_reader("builtin:answer-reader-context")
    assert reader.context
    question, said = "Who built the clock?", "It was built by the clockmaker Oriol Santpere."
    alone, after = reader.scores(question, [("The Clock", said, ""), ("The Clock", said, TOPIC[1])])
    assert alone != after  # the sentence before is read, not dropped


def test_a_list_of_readers_scores_each_candidate_by_their_mean_logit(tmp_path):
    question = "Who built the clock?"
    cands = [(t, s, TOPIC[1]) for t, s in ROWS[0]["candidates"]]
    one, ctx = load_reader("builtin:answer-reader"), load_reader("builtin:answer-reader-context")
    both = load_reader(["builtin:answer-reader", "builtin:answer-reader-context"])
    assert both is load_reader(("builtin:answer-reader", "builtin:answer-reader-context"))  # loaded once
    assert load_reader(["builtin:answer-reader"]) is one
    a, b, mean = one.scores(question, cands), ctx.scores(question, cands), both.scores(question, cands)
    assert mean == pytest.approx([(x + y) / 2 for x, y in zip(a, b)], abs=1e-4)
    assert max(range(3), key=mean.__getitem__) == 1
    # in a config: a list, its folders relative to the config file; an empty list is an error naming the field
    (tmp_path / "world.yaml").write_text("grounding:\n  reader: [builtin:answer-reader, my-reader]\n")
    cfg = EternaConfig.load(tmp_path / "world.yaml")
    assert cfg.grounding.reader == ("builtin:answer-reader", str(tmp_path / "my-reader"))
    (tmp_path / "empty.yaml").write_text("grounding:\n  reader: []\n")
    with pytest.raises(EternaError, match=r"empty\.yaml.*grounding\.reader.*empty list of readers"):
        EternaConfig.load(tmp_path / "empty.yaml")
