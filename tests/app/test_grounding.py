"""Faithful replies: evidence selection, grounded decoding, the support check and the "I do not know" gate, on the
real MiniLM embedder and a tiny real model."""

import json
import re

import pytest
import torch

from app.backends.decoding import Decoding
from app.backends.transformers import DecodingRules
from app.config import EternaConfig
from app.cues import Cues
from app.dialogue import DialogueEngine
from app.grounding import Evidence, EvidenceSelector, split_sentences, wrap_in_voice
from retrieval.index import LoreIndex
from retrieval.rebuild import rebuild_index


@pytest.fixture
def lore(tiny_corpus, embedder, tmp_path):
    rebuild_index(tiny_corpus, tmp_path / "index", embedder)
    return LoreIndex.open(tmp_path / "index", embedder)


@pytest.fixture
def selector(lore, embedder):
    return EvidenceSelector(embedder, Cues.load(), texts=[c.text for c in lore.chunks])


@pytest.mark.parametrize("question, expected", [
    ("Who built the great clock?", "Oriol Santpere"),
    ("How many benches are there for readers?", "4 green benches"),
    ("What does a late book cost?", "one silver"),
])
def test_evidence_selection_ranks_the_answering_sentence_first(lore, selector, embedder, question, expected):
    v = embedder.encode([question])[0]
    ev = selector.select(question, v, lore.search_vector(v, 4), 3)
    assert expected in ev[0].text, [e.text for e in ev]
    assert all(isinstance(e, Evidence) and e.chunk.startswith(e.doc) for e in ev)
    assert [e.score for e in ev] == sorted((e.score for e in ev), reverse=True)


def test_split_sentences_keeps_whole_sentences():
    text = 'It was built in 1612. "Never again," she said. Dr. no. The end of it all!'
    assert split_sentences(text)[0] == "It was built in 1612."
    assert split_sentences(text)[-1] == "The end of it all!"


def test_support_check_flags_invented_names_and_numbers(selector):
    ev = [Evidence("The clock was built by Oriol Santpere in 1612.", "c#0", "c", "The Clock Room", 1.0)]
    assert selector.unsupported("Oriol Santpere built it in 1612.", ev) == []
    assert selector.unsupported("It was built by Pedro Gil in 1700.", ev) == ["1700", "gil", "pedro"]
    assert selector.unsupported("Hello Ilse, it was 1612.", ev, allowed="Ilse") == []
    assert selector.answer_tokens("Who built the clock?", ev[0]) == {"oriol", "santpere"}
    assert selector.answer_tokens("When was the clock built?", ev[0]) == {"1612"}


def test_wrap_in_voice_adds_markers_once():
    assert wrap_in_voice("It is 4.", ["Halt."], ["Move along."]) == "Halt. It is 4. Move along."
    assert wrap_in_voice("Halt. It is 4. Move along.", ["Halt."], ["Move along."]) == "Halt. It is 4. Move along."
    assert wrap_in_voice("It is 4.", None, []) == "It is 4."


def test_repetition_penalty_spares_the_prompt_and_copy_bias_lifts_evidence_tokens():
    scores = torch.tensor([[2.0, 2.0, -1.0, 0.5]])
    ids = torch.tensor([[0, 1, 2]])  # prompt = [0, 1], generated = [2]
    out = DecodingRules(Decoding(repetition_penalty=2.0, penalty_scope="generated"), 2, [])(ids, scores.clone())
    assert out.tolist() == [[2.0, 2.0, -2.0, 0.5]]  # token 2 penalised, prompt tokens 0 and 1 untouched
    out = DecodingRules(Decoding(repetition_penalty=2.0), 2, [])(ids, scores.clone())
    assert out.tolist() == [[1.0, 1.0, -2.0, 0.5]]  # penalty_scope "all": the prompt's tokens too
    out = DecodingRules(Decoding(copy_text="x", copy_bias=1.5), 2, [1, 3])(ids, scores.clone())
    assert out.tolist() == [[2.0, 3.5, -1.0, 2.0]]


@pytest.fixture
def engine(project):
    return DialogueEngine.from_config(project)


def _with(engine, **grounding):
    engine.config = engine.config.model_copy(
        update={"grounding": engine.config.grounding.model_copy(update=grounding)})
    return engine


def test_fact_reply_reports_its_grounding(engine):
    reply = engine.say("archivist", "How many books can a reader borrow at once?", chapter=1)
    g = reply.grounding
    assert reply.route == "fact" and g["answer"] in ("generated", "extracted")
    assert g["evidence"] and "3 books" in g["evidence"][0]["text"]
    if g["answer"] == "generated":  # the random tiny model's text is kept only when it passes the check
        assert g["supported"] and g["carries_answer"]
    else:
        assert "3 books" in reply.text
    json.dumps(reply.to_json())


def test_extract_mode_says_the_evidence_in_the_characters_voice(engine):
    _with(engine, answer="extract", extract_sentences=1)
    reply = engine.say("director", "Who built the great clock?", chapter=1)
    assert "Oriol Santpere" in reply.text and reply.grounding["answer"] == "extracted"
    # the archivist may not see rooms: the same question is one it does not know
    assert engine.say("archivist", "Who built the great clock?").grounding["answer"] == "idk"
    assert reply.tokens == {} and reply.sources[0]["doc"] == "clock-room"


def test_unanswerable_and_hidden_questions_get_i_do_not_know(engine):
    _with(engine, answer="extract")
    hidden = engine.say("warden", "Who set the Fire of 1731, and why?", chapter=1)  # the answer is chapter 3
    assert hidden.route == "fact" and hidden.grounding["answer"] == "idk", hidden
    assert "do not know" in hidden.text and hidden.sources == []
    late = engine.say("director", "Who set the Fire of 1731, and why?", chapter=3)
    assert late.grounding["answer"] == "extracted" and "the-fire-truth" in {s["doc"] for s in late.sources}
    _with(engine, min_evidence=5.0)
    assert engine.say("archivist", "How many books can I borrow?").grounding["answer"] == "idk"


def test_the_support_policy_replaces_an_unsupported_generation(engine):
    _with(engine, answer="generate", on_unsupported="idk", copy_bias=0.0)
    reply = engine.say("archivist", "How many books can a reader borrow at once?", chapter=1)
    g = reply.grounding
    assert g["answer"] in ("generated", "idk")
    assert (g["answer"] == "idk") == (not g["supported"] or not g["carries_answer"] or
                                      bool(engine.cues.find("idk", g.get("generated", reply.text))))


def test_prompts_come_from_the_world(tmp_path, tiny_llm_dir, embedder):
    from tests.conftest import write_project

    path = write_project(tmp_path / "p", str(tiny_llm_dir))
    text = path.read_text() + "world:\n  name: Port Ashen\n  setting: A harbour town in 1925.\n" \
        "prompts:\n  style: 'Talk like a sailor of {world}.'\n"
    path.write_text(text)
    cfg = EternaConfig.load(path)
    rebuild_index(cfg.paths.corpus, cfg.paths.index, embedder)
    engine = DialogueEngine.from_settings(cfg)
    from app.prompt import build_messages

    messages, _ = build_messages(engine.cast.get("warden"), "style", [], [], "hi", engine.generator.count_tokens,
                                 1000, world=cfg.world, prompts=cfg.prompts)
    assert "in Port Ashen." in messages[0]["content"] and "Talk like a sailor of Port Ashen." in messages[0]["content"]
    off, _ = build_messages(engine.cast.get("warden"), "offworld", [], [], "hi", engine.generator.count_tokens,
                            1000, world=cfg.world, prompts=cfg.prompts)
    assert "A harbour town in 1925." in off[0]["content"]
    # the cacheable head: the same on every turn of a character and route, whatever facts and summary follow
    from app.grounding import Evidence
    from app.prompt import prompt_head

    head = prompt_head(engine.cast.get("warden"), "both", cfg.world, cfg.prompts)
    ev = [Evidence(text="The docks open at six.", chunk="c1", doc="docks", title="Docks", score=1.0)]
    turns = [build_messages(engine.cast.get("warden"), "both", ev[:k], [], "hi", engine.generator.count_tokens,
                            1000, world=cfg.world, prompts=cfg.prompts, summary=summary)[0][0]["content"]
             for k, summary in ((0, ""), (1, "The player said earlier: hello"), (1, ""))]
    assert len(set(turns)) == 3 and all(t.startswith(head + "\n\n") for t in turns)
    guarded = prompt_head(engine.cast.get("warden"), "both", cfg.world, cfg.prompts, guarded=True)
    assert guarded.startswith(head) and guarded != head


def test_framework_code_holds_no_world():
    from tests.conftest import REPO

    words = ("biblioteca", "library", "valdescura", "archivist", "warden", "kestrel", "códice", "tallis", "teague",
             "silverhorn", "stationmaster", "telegrapher", "hochfeld", "kaltstock", "gamsjagd", "ferner", "gstrein",
             "tethys", "oceanus", "kallinikos", "deuterium", "haverford", "dingo creek", "tarrawong", "oams", "maddock",
             "warrul", "kalkarra", "saint-denis", "diallo", "paquette", "lévesque", "poutine", "filou", "pistou",
             "emberfall", "cinderhelm", "vossgard", "highmere", "copperpot", "yuzuhara", "kikyo", "karasu", "sekiyama",
             "calvo", "marenza", "favarossa", "curcuruto", "vrettos", "sferlazza", "lampara", "momiji", "hoshino", "kanemitsu", "tokubei",
             "brimhavn", "hladvik", "skarnsey", "austrhavn", "vindholm", "kaupstrand", "oddny", "skardsholt",
             "gjallthing", "kolbeinsdottir", "eyvind")
    for pkg in ("app", "retrieval", "tuning"):
        for path in (REPO / pkg).rglob("*"):
            if path.suffix in (".py", ".yaml") and path.is_file():
                text = path.read_text(encoding="utf-8").lower()
                found = [w for w in words if w in text]
                assert not found, f"{path.relative_to(REPO)} mentions {found}"


def test_facts_report_runs_on_one_engine_do_not_share_memory(engine):
    from app.evaluation.facts import facts_report

    items = [{"npc": "director", "question": "Who built the great clock?", "answers": ["Oriol Santpere"],
              "chapter": 1, "doc": "clock-room", "line": 1}]
    first, second = facts_report(engine, items), facts_report(engine, items)
    assert first["contains_gold"] == second["contains_gold"] == 1.0
    assert len({session for session, _ in engine.memory._recent}) == 2  # each run asked in sessions of its own


def test_compose_answer_keeps_whole_sentences_within_max_words(selector):
    from app.grounding import compose_answer

    ev = [Evidence("The great clock was built by the clockmaker Oriol Santpere of Girona, a man who never slept, "
                   "in the hard winter of 1612.", "c#0", "c", "The Clock Room", 1.0),
          Evidence("It strikes thirteen at midnight.", "c#1", "c", "The Clock Room", 0.9)]
    q = "Who built the great clock?"
    assert compose_answer(q, ev, selector, None) == f"{ev[0].text} {ev[1].text}"  # no limit: both, whole
    whole = compose_answer(q, ev, selector, 24)
    assert whole == ev[0].text  # the best sentence always; the next only where it fits
    short = compose_answer(q, ev, selector, 16, clauses=True)
    assert short.startswith("The great clock was built by the clockmaker Oriol Santpere")  # the answer clause
    assert "never slept" not in short and short.endswith(".") and len(short.split()) <= 16
    assert compose_answer(q, [], selector, 30) == ""


def test_shorten_never_drops_the_answer_or_the_sentence_start():
    from app.grounding import content_words, shorten

    s = "In 1879 he published a slim Latin pamphlet, De libris nondum scriptis, arguing from old inventories that a " \
        "catalogue of future books did not burn, to the scorn of every scholar in Salamanca."
    out = shorten(s, {"de", "libris"}, 12, content_words("What pamphlet did he publish?"))
    assert out.startswith("In 1879 he published a slim Latin pamphlet") and "De libris nondum scriptis" in out
    assert "Salamanca" not in out and out.endswith(".")
    assert shorten("Short and whole.", set(), 3) == "Short and whole."  # no asides to drop: as it was


def _names(text):  # names and numbers, as EvidenceSelector.entities(text, None) finds them
    return {w.lower() for w in re.findall(r"\w+", text) if w[0].isupper() or w[0].isdigit()}


@pytest.mark.parametrize("sentence, keep, cut", [
    # an aside after the answer goes; the answer type's names stay
    ("The mayor is Burgi Gstrein, elected in 2020, the first woman to lead the village council.", {"burgi"},
     "The mayor is Burgi Gstrein."),  # "elected": a participle after a whole clause
    ("It opened on 21 December 1961, after three summers of building, and its first cabins held 40 passengers.",
     {"21", "1961"}, "It opened on 21 December 1961."),
    ("A full tank runs it for about 30 hours; the propane company, Gaz-Nord, refills it within a day.", {"30"},
     "A full tank runs it for about 30 hours."),
    ("The winner receives a carved wooden chamois, and the slowest finisher gets a wooden snail.", set(),
     "The winner receives a carved wooden chamois."),
    # what is asked may be further on: kept, and the cut comes after it
    ("The protocol was used twice, in 2259 and in 2262, by the old crew.", {"2259", "2262"},
     "The protocol was used twice, in 2259 and in 2262."),
])
def test_an_aside_after_the_answer_is_cut(sentence, keep, cut):
    from app.grounding import aside_cuts

    assert aside_cuts(sentence, keep, "What is it?", _names)[0] == cut


@pytest.mark.parametrize("sentence, keep", [
    ("It runs on three redundant cores named Ana, Bea and Cai.", set()),  # a list goes on
    ("Gannet grows soy, potatoes, dwarf wheat and peppers.", set()),
    ("Forge Row, the district of thirty-one forges, fills the east bank.", set()),  # the verb comes after the cut
    ("Forge Row, the district of thirty-one forges, filled the east bank.", set()),  # "filled" is its verb here
    ("Alois Pfeifer, who lived from 1899 to 1981, is called the father of skiing.", {"1899"}),
    ("Humans are welcome that night, but by custom they bring the smiths bread, never drink.", set()),  # negation
    ("She brought it back to Kestrel in her skiff, the Small Mercy.", set()),  # a name, and no type was asked
    ("The kennel attendant on night duty, Etienne Roy, then 24 years old.", {"etienne"}),  # no verb: no clause
    ("The station is open from dawn; the keeper, Ada Vell, by appointment.", set()),  # "...; the keeper" no clause
    ("The sign reads \"Home, sweet home, and nowhere else\" above the door.", set()),  # inside quotes
    ("Short, and whole.", set()),  # under five words
    # an aside that interrupts a clause: what stays would end on a word that waits for the rest
    ("It is a cold and narrow stone room open to the sky, and it is, as the wardens found, the real lock.", set()),
    ("When it is thick enough he hangs straw on the post; when it is not, he hangs a black rag.", set()),
])
def test_no_cut_parts_a_list_a_clause_a_negation_or_a_name(sentence, keep):
    from app.grounding import aside_cuts

    assert aside_cuts(sentence, keep, "What is it?", _names) == []


def test_no_cut_drops_what_the_question_asks_about(selector):
    """What goes may not say a name or number of the question that what stays lacks: "four long blasts" was cut
    from the answer to "What do four long whistle blasts mean?"; an aside the question does not name still goes."""
    from app.grounding import aside_cuts

    def _names(text):  # names and numbers as the engine finds them ("four" is a number)
        return selector.entities(text, None)

    signals = ("Rule 52 gives the whistle signals: one short blast means apply the brakes, two long blasts mean "
               "release the brakes, and four long blasts call in the flagman.")
    assert aside_cuts(signals, set(), "What do four long whistle blasts mean?", _names) == []
    station = "The hut was built in 1956 by the lift company, after three summers of building at Moosalm."
    assert aside_cuts(station, {"1956"}, "When was the hut built?", _names) == [
        "The hut was built in 1956 by the lift company."]
    assert aside_cuts(station, {"1956"}, "When was the hut at Moosalm built?", _names) == []


def test_a_why_question_keeps_the_reason(selector):
    """A question that asks why keeps the reason clause the sentence gives; any other question may lose it."""
    from app.grounding import aside_cuts

    def _names(text):
        return selector.entities(text, None)

    bell = "Above the works hangs the bell, a heavy bronze called the Sleeper, because she strikes so softly."
    assert aside_cuts(bell, set(), "Why do they call the bell the Sleeper?", _names) == []
    assert aside_cuts(bell, set(), "How come the bell is called the Sleeper?", _names) == []
    assert aside_cuts(bell, set(), "What hangs above the works?", _names) == [
        "Above the works hangs the bell, a heavy bronze called the Sleeper."]


def test_a_cut_never_ends_on_a_word_that_waits_for_more():
    from app.grounding import aside_cuts

    # not "..., the creature that." (the aside interrupts the relative clause): only the cut before it all
    sentence = "The clasps are shaped like newts, the creature that, in the old herbals, lives unharmed in fire."
    assert aside_cuts(sentence, set(), "What is it?", _names) == ["The clasps are shaped like newts."]


@pytest.mark.parametrize("question, sentence", [
    ("What mark is stamped on the bars?", "Each bar is stamped with the mark of the smelter, a horned star."),
    ("Who is the union steward?", "Kagame has a wary respect for Ayo Delacourt, the elected steward of the union."),
])
def test_an_apposition_that_says_what_is_asked_stays(question, sentence):
    from app.grounding import aside_cuts

    assert aside_cuts(sentence, {"ayo", "delacourt"} & _names(sentence), question, _names) == []
    assert aside_cuts(sentence, {"ayo", "delacourt"} & _names(sentence), "Is it far?", _names)  # else cut


def test_extracted_fact_replies_are_clean_text(engine):
    """Every extracted reply of the tiny world: no markup, no fragment, balanced quotes."""
    from app.evaluation.quality import clean_problems

    for i, q in enumerate(("Who built the great clock?", "How many benches are there for readers?",
                           "What does a late book cost?")):
        r = engine.say("archivist", q, session=f"clean-{i}")
        assert not clean_problems(r.text), (r.text, clean_problems(r.text))


@pytest.mark.parametrize("style, opens, closes", [
    ('Gruff. Every reply begins with "Right, listen." and ends with "Torque it and trust it." Short.',
     ["Right, listen."], ["Torque it and trust it."]),
    ('Terse. Starts with "Halt." or "At ease." and ends with “Move along, reader.”', ["Halt.", "At ease."],
     ["Move along, reader."]),
    ('Second person; ends every reply with the line "The rock turns on."', [], ["The rock turns on."]),
])
def test_markers_derive_from_the_style_text(style, opens, closes):
    from app.voice import derive_markers

    m = derive_markers(style)
    assert m is not None and m.opens == opens and m.closes == closes


def test_a_style_without_quoted_phrases_derives_nothing_and_validate_warns():
    from app.config import Cast
    from app.validate import voice_markers
    from app.voice import derive_markers, with_derived_markers

    assert derive_markers("Plain and warm, no catchphrases.") is None
    assert derive_markers('Calls the player "love".') is None  # a pet word, not an opener or closer
    base = dict(role="npc", persona="p", knows="all")
    cast = Cast(npcs=[{"id": "a", "name": "A", "style": "Plain and warm.", **base},
                      {"id": "b", "name": "B", "style": 'Ends with "So it goes."', **base},
                      {"id": "c", "name": "C", "style": 'Ends with "So it goes."', "markers": {}, **base}])
    report = voice_markers(cast)
    assert report["a"].startswith("warning") and report["b"].startswith("derived") and report["c"] == "declared"
    filled = with_derived_markers(cast)
    assert filled.get("b").markers.closes == ["So it goes."]
    assert filled.get("a").markers is None and filled.get("c").markers.closes == []  # `markers: {}` opts out


def test_a_cast_without_markers_speaks_inside_the_ones_its_style_names(engine):
    """The tiny cast declares no `markers:`; its style texts quote how each character begins and ends, so an
    extracted fact is said inside them, also in a variant engine built with another cast object."""
    from app.config import Cast
    from tests.fixtures_data import NPCS_YAML
    import yaml

    r = engine.say("archivist", "How many books may a reader borrow at once?", session="markers")
    assert r.grounding["answer"] == "extracted"
    assert r.text.startswith("For the record:") and r.text.endswith("Filed and noted."), r.text
    other = engine.variant(cast=Cast(**yaml.safe_load(NPCS_YAML)))
    assert other.cast.get("warden").markers.closes == ["Move along, reader."]


def test_answer_order_puts_the_sentence_closest_to_the_question_first(selector):
    q = "Which step of the great stair creaks?"
    topic = Evidence("The great stair is the spine of the house, a spiral of grey stone that climbs seven floors.",
                     "c1", "d1", "The Great Stair", 1.05)
    answer = Evidence("The only step that creaks is the ninth.", "c1", "d1", "The Great Stair", 1.0)
    assert selector.answer_order(q, [topic, answer]) == [answer, topic]  # same sentences, the answer first
    # a clear lead in the selection's own score is kept: the order is not the sentence cosine alone
    lead = Evidence(topic.text, "c1", "d1", topic.title, 1.5)
    assert selector.answer_order(q, [lead, answer]) == [lead, answer]
    assert selector.answer_order(q, [answer]) == [answer]
    assert selector.answer_order(q, []) == []


def test_own_evidence_that_answers_by_itself_is_not_silenced_by_hidden_text(selector):
    """The hidden margin says "I do not know" when hidden text (a later chapter) scores better; but a sentence the
    character may see that holds a number of the asked type and three of the question's topic words answers on its own
    (development, the Library: "How many bolts hold the iron door ...?" had been "I do not know")."""
    from app.grounding import GroundingPolicy, topic_words

    policy = GroundingPolicy(EternaConfig(), selector, Cues.load(), None)
    own = Evidence("Down the stair, the eight bolts of the iron door slide back.", "w#0", "w", "The Wing", 1.0)
    assert policy.answers_on_its_own("How many bolts hold the iron door?", own)
    # no number of the asked type, or one topic word only, or an untyped question: the margin applies
    assert not policy.answers_on_its_own("How many bolts hold the iron door?",
                                         Evidence("The iron door has bolts.", "w#1", "w", "The Wing", 1.0))
    assert not policy.answers_on_its_own("How many keys open the iron gate?", own)
    assert not policy.answers_on_its_own("How many bolts on that door?", own)  # shares two: "bolts", "door"
    assert not policy.answers_on_its_own("Why are the bolts of the iron door drawn?", own)
    # the names the question gives are whom it asks about, not shared topic words (development, the clinic: a
    # gated question's answer came from the owner's own record while the gate was shut)
    owner = Evidence("Name: Dr. Simone Tremblay; Role: Owner, medical director and surgeon; Since: 2008.", "o#0", "o",
                     "Staff", 1.0)
    assert not policy.answers_on_its_own("Heard who's covering for Dr. Tremblay on the big surgeries?", owner)
    # words that are only verbs name no topic ("come", "does": its noun is "doe")
    assert topic_words("Where does your secret crawlway come out?") == topic_words("secret crawlway")
    off = EternaConfig().model_copy(update={"grounding": EternaConfig().grounding.model_copy(
        update={"hidden_own_answer": None})})
    assert not GroundingPolicy(off, selector, Cues.load(), None).answers_on_its_own(
        "How many bolts hold the iron door?", own)


def test_a_lead_in_is_said_only_when_it_adds_nothing_the_evidence_lacks(selector):
    """grounding.frame: adapter. On the Library's fact questions the adapter's lead-ins named a well "the Cryptum",
    answered "Two." to a question the evidence answers otherwise, and said "Ain't got no idea.": all must be dropped."""
    from app.cast import NpcSpec
    from app.grounding import GroundingPolicy

    policy = GroundingPolicy(EternaConfig(), selector, Cues.load(), None)
    spec = NpcSpec(id="warden", name="Capitán Rodrigo Ferrán", role="npc", persona="Warden of the Stacks.",
                   style="Terse.", knows="all")
    ev = [Evidence("The great clock was built by the clockmaker Oriol Santpere in 1612.", "c#0", "c", "The Clock Room",
                   1.0)]
    q = "Who built the great clock?"
    assert policy.frame_fault(spec, q, "Clock tower.", ev) is None
    assert policy.frame_fault(spec, q, "A clock... proper clock.", ev) is None
    assert policy.frame_fault(spec, q, "It was Oriol Santpere, in 1612.", ev) is None  # the evidence's own names
    assert policy.frame_fault(spec, q, "The clock... it's called the Cryptum.", ev).startswith("unsupported")
    assert policy.frame_fault(spec, q, "Two.", ev).startswith("unsupported")
    assert policy.frame_fault(spec, q, "Ain't got no idea.", ev) == "negation"
    assert policy.frame_fault(spec, q, "It was never built.", ev) == "negation"
    assert policy.frame_fault(spec, q, "Clock tower?", ev) == "not one whole sentence"
    assert policy.frame_fault(spec, q, "", ev) == "not one whole sentence"
    assert policy.frame_fault(spec, q, "The clock was built", ev) == "not one whole sentence"


def test_a_generated_fact_reply_that_loops_falls_back_to_the_extract(selector):
    """A `both` turn's generation (development, Kestrel, a gated question asked as gossip): "The cold. The dead-end.
    The Kettle. ... The cold. ..." named nothing unsupported and the question asks for no typed answer, so it was
    said. A reply that loops is replaced like an unsupported one; a reply that does not is kept."""
    from app.cast import NpcSpec
    from app.grounding import GroundingPolicy

    policy = GroundingPolicy(EternaConfig(), selector, Cues.load(), None)
    spec = NpcSpec(id="warden", name="Capitán Rodrigo Ferrán", role="npc", persona="Warden of the Stacks.",
                   style="Terse.", knows="all")
    ev = [Evidence("Behind the spur past the great clock the air is cold enough to keep seeds.", "c#0", "c",
                   "The Clock Room", 1.0)]
    q = "Any gossip on what is kept behind the spur past the great clock?"
    loop = "The cold. The spur. The clock. The cold. The seeds. The end."
    reply, info = policy.check(spec, q, loop, ev, "hybrid")
    assert info["loops"] and info["answer"] == "extracted" and reply != loop and "cold enough" in reply
    fine = "Behind the spur the air is cold, cold enough to keep seeds."
    reply, info = policy.check(spec, q, fine, ev, "hybrid")
    assert not info["loops"] and info["answer"] == "generated" and reply == fine


def test_a_long_extracted_answer_keeps_its_opener_and_drops_the_sign_off(engine):
    from app.cast import Markers
    from app.grounding import GroundingPolicy

    spec = engine.cast.get("director").model_copy(
        update={"markers": Markers(opens=["Halt."], closes=["Move along, reader."])})
    short = [Evidence("The great clock was built by Oriol Santpere.", "c#0", "clock-room", "Clock", 0.9)]
    long_ = [Evidence("The great clock was built by Oriol Santpere in the winter of 1702, with brass from the "
                      "foundry by the river and glass from the old chapel windows, and it has not stopped "
                      "since the day it was wound.", "c#0", "clock-room", "Clock", 0.9)]
    grounding = engine.config.grounding
    for within, text, closed in ((30, short, True), (30, long_, False), (None, long_, True)):
        config = engine.config.model_copy(update={"grounding": grounding.model_copy(
            update={"answer_order": "rank", "extract_sentences": 1, "closer_within": within})})
        policy = GroundingPolicy(config, engine.selector, engine.cues, engine.retriever)
        said = policy.extract(spec, text, "Who built the great clock?")
        assert said.startswith("Halt.") and "Oriol Santpere" in said
        assert said.endswith("Move along, reader.") is closed, (within, said)


def test_how_a_question_is_asked_is_not_what_it_asks():
    """Cues.without(("ask_frame",)): "tell me", "do you know", "in three words" and the like go, the question stays
    (the Library's demo line "Tell me in three words how many books Leonor brought ..." was "I do not know", the
    same question without the frame is answered); a frame's words inside the question stay."""
    cues = Cues.load()
    bare = lambda text: cues.without(("ask_frame",), text)  # noqa: E731
    assert bare("Tell me in three words how many books Leonor brought?") == "how many books Leonor brought?"
    assert bare("Could you tell me who keeps the keys?") == "who keeps the keys?"
    assert bare("Do you know what they call the old mill, briefly?") == "what they call the old mill?"
    assert bare("Any idea which gate opens first? In one sentence.") == "which gate opens first?"
    assert bare("Maestra, good evening. What is the Lost Index bound in?") == \
        "Maestra, good evening. What is the Lost Index bound in?"
    assert bare("Who told the miners about the strike?") == "Who told the miners about the strike?"  # "told"
    assert bare("How many words are carved on the gate?") == "How many words are carved on the gate?"


def test_a_generated_reply_to_an_untyped_question_must_say_what_the_evidence_adds():
    """`hybrid` mode's carry check for a question of no answer type (what share, what happens): the reply must say
    what the best sentence adds to the question. A fluent reply about something else fails; a paraphrase that keeps
    the added words passes; evidence that adds nothing asks for nothing."""
    from app.grounding import GroundingPolicy

    q = "In one sentence: what share of every sale at the auction goes to the commune?"
    top = [Evidence("A tenth of every sale at the auction goes to the commune, and the rest to the boat.", "c#0",
                    "c", "Auction", 1.0)]
    says = GroundingPolicy.says_what_it_adds
    assert says(q, "A tenth goes to the commune; the boat keeps the rest.", top)
    assert not says(q, "The fish market, the auction, and the fish, the fish is bought at dawn.", top)
    assert not says(q, "Ask the harbour master, he keeps the ledgers.", top)
    assert says(q, "Anything at all.", [Evidence("Every sale at the auction goes to the commune.", "c#1", "c",
                                                  "Auction", 1.0)])


def test_how_many_is_carried_by_the_count_not_by_another_number_of_the_sentence():
    """"How many books ...": the count is the number right before the things counted, so a generated "1387." (the
    sentence's year) no longer carries it; a sentence that counts nothing asked falls back to any number."""
    from app.grounding import GroundingPolicy

    policy = GroundingPolicy(config=None, selector=None, cues=Cues.load(), retriever=None)
    e = Evidence("In the spring of 1387 Leonor left the convent with eleven companions, fourteen mules and one hundred "
                 "and eighty-six books.", "f#0", "f", "The Founding", 1.0)
    assert policy.counted("How many books did Leonor bring when she founded the Library?", e) == {"eighty-six"}
    assert policy.counted("how many mules went north?", e) == {"fourteen"}
    assert policy.counted("How many companion nuns came?", e) == {"eleven"}
    assert policy.counted("how many books Leonor brought", e) == {"eighty-six"}  # not "1387 Leonor"
    assert policy.counted("How many towers were there?", e) == set()
    assert policy.counted("When did she leave?", e) == set()
