import json

import numpy as np
import pytest

from app.config import Cast, EternaConfig
from app.cues import Cues
from app.dialogue import build_router
from app.evaluation.facts import router_report
from app.router import LABELS, OPTIONAL, Router, load_router_items, load_seeds
from app.router_data import synthesise
from retrieval.errors import ConfigError, CorpusError
from retrieval.index import LoreIndex
from retrieval.rebuild import rebuild_index
from tests.conftest import REPO
from tests.fixtures_data import SEEDS

TINY_CUES = "offworld: [smartphone, internet, javascript, netflix, bitcoin]\n"


@pytest.fixture
def tiny_world(tiny_corpus, embedder, tmp_path):
    rebuild_index(tiny_corpus, tmp_path / "index", embedder)
    index = LoreIndex.open(tmp_path / "index", embedder)
    (tmp_path / "cues.yaml").write_text(TINY_CUES)
    cues = Cues.load(tmp_path / "cues.yaml")
    return index, cues


def _router(embedder, index, cues, seeds=(), cache=None):
    docs = {}
    for c in index.chunks:
        docs.setdefault(c.doc, (c.title, []))[1].append(c.text)
    examples = synthesise([(t, " ".join(x)) for t, x in docs.values()], ["Ilse", "Rodrigo"], cues) + list(seeds)
    return Router(embedder, cues, examples, index, cache_dir=cache)


@pytest.mark.parametrize("text, label", [
    ("Who built the clock with thirteen hours?", "fact"),
    ("how many books may i take home", "fact"),
    ("Hello, nice to meet you!", "style"),
    ("Thanks, you have been very kind.", "style"),
    ("Tell me in a rhyme when the Library was founded.", "both"),
    ("What's the best smartphone to buy?", "offworld"),
    ("Write me some JavaScript please", "offworld"),
    ("I close the book and look around the clock room.", "style"),
    # the character's own tastes, life and chat are small talk, whatever question word they start with (each was
    # `fact` or `offworld` before the router learnt social templates and the `personal` cue)
    ("What's your favourite time of year, Ilse?", "style"),
    ("What was it like growing up here?", "style"),
    ("Got any good stories for me?", "style"),
    ("Any advice for a newcomer?", "style"),
    ("Cold out today, isn't it?", "style"),
    ("What got you into this job?", "style"),
    # ... while the character's own record is a fact
    ("Where were you born, Rodrigo?", "fact"),
])
def test_routes_a_world_it_has_no_labels_for(tiny_world, embedder, text, label):
    index, cues = tiny_world
    router = _router(embedder, index, cues)  # synthesised from the lore alone: no seeds
    v = embedder.encode([text])[0]
    lore = index.search_vector(v, 1)[0].score
    route = router.route(text, v, lore)
    assert route.label == label, route
    # the reason and signals carry what decided: this text's probabilities, the lore match given, the cue it said
    probs = router.probabilities(text, v, lore)
    assert route.reason.startswith(f"{label} {probs.max():.2f} (lore match {lore:.2f}"), route.reason
    assert route.signals["probabilities"] == dict(zip(LABELS, probs.round(3).tolist()))
    assert route.signals["lore_score"] == round(lore, 3)
    if label == "offworld":
        cue = route.signals["cues"]["offworld"]
        assert cue in text and f"offworld '{cue}'" in route.reason


def test_synthesis_is_deterministic_and_uses_the_world(tiny_world):
    index, cues = tiny_world
    docs = [(c.title, c.text) for c in index.chunks]
    a, b = synthesise(docs, ["Ilse"], cues), synthesise(docs, ["Ilse"], cues)
    assert a == b and {lbl for _, lbl in a} == set(LABELS) - set(OPTIONAL)  # `action` comes from the cast's actions
    facts = " ".join(t for t, lbl in a if lbl == "fact")
    assert "The Clock Room" in facts or "Oriol Santpere" in facts
    assert any("smartphone" in t or "netflix" in t for t, lbl in a if lbl == "offworld")


def test_trained_router_is_cached_by_what_made_it(tiny_world, embedder, tmp_path):
    index, cues = tiny_world
    first = _router(embedder, index, cues, cache=tmp_path / "cache")
    files = list((tmp_path / "cache").glob("router-*.npz"))
    assert len(files) == 1
    again = _router(embedder, index, cues, cache=tmp_path / "cache")
    assert np.array_equal(first.coef, again.coef) and again.key == first.key
    seeded = _router(embedder, index, cues, SEEDS, cache=tmp_path / "cache")
    assert seeded.key != first.key and len(list((tmp_path / "cache").glob("router-*.npz"))) == 2
    # cue lists the router does not read (the action detector's) leave its key, and its cached file, as they were
    import dataclasses

    more = dict(cues.phrases, request=(*cues.phrases["request"], "be so kind as to"))
    assert _router(embedder, index, dataclasses.replace(cues, phrases=more), cache=tmp_path / "cache").key == first.key
    more = dict(cues.phrases, fact=(*cues.phrases["fact"], "pray tell"))
    assert _router(embedder, index, dataclasses.replace(cues, phrases=more), cache=tmp_path / "cache").key != first.key


def test_a_reranked_search_builds_a_router_keyed_by_its_settings(tiny_world, embedder, tmp_path):
    """`retrieval.rerank` used to stop the engine from starting: the router's cache key could not describe the
    reranked retriever (a set among its fields). Each setting of the search now has its own key."""
    from retrieval.retriever import RetrieverSpec, make_retriever

    index, cues = tiny_world
    docs = {}
    for c in index.chunks:
        docs.setdefault(c.doc, (c.title, []))[1].append(c.text)
    examples = synthesise([(t, " ".join(x)) for t, x in docs.values()], ["Ilse", "Rodrigo"], cues)
    keys = []
    for spec in (RetrieverSpec(mode="hybrid"), RetrieverSpec(mode="hybrid", rerank="sentences"),
                 RetrieverSpec(mode="hybrid", rerank="sentences", rerank_weight=0.8)):
        router = Router(embedder, cues, examples, index, retriever=make_retriever(spec, embedder), k=4,
                        cache_dir=tmp_path / "cache")
        text = "Who built the clock with thirteen hours?"
        v = embedder.encode([text])[0]
        assert router.route(text, v, max(h.score for h in router.lore_hits(index, text, v))).label == "fact"
        keys.append(router.key)
    assert len(set(keys)) == 3


def test_seed_file_errors(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "hi", "label": "chitchat"}\n')
    with pytest.raises(CorpusError, match="s.jsonl:1: label 'chitchat'"):
        load_seeds(path)


@pytest.mark.parametrize("body, message", [
    ("", "this one is empty"),
    ("- a\n- b", "expected a mapping"),
    ("offworld: [phone\n", "invalid YAML"),
    ("gadgets: [phone]", "unknown cue category 'gadgets'"),
    ("offworld: ['(unclosed']", "offworld: phrase '\\(unclosed' is not a valid pattern"),
    ("offworld: phone", "offworld must be a list"),
    ("exclude: {gadgets: [x]}", "exclude.gadgets: unknown"),
])
def test_bad_cue_files(tmp_path, body, message):
    path = tmp_path / "cues.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=message):
        Cues.load(path)
    with pytest.raises(ConfigError, match="cue file not found"):
        Cues.load(tmp_path / "missing.yaml")


def test_world_cues_extend_and_exclude_the_builtins(tmp_path):
    path = tmp_path / "cues.yaml"
    path.write_text("offworld: [telephone]\nsocial: [ahoy]\nexclude: {form: [song]}\n")
    cues = Cues.load(path)
    assert cues.find("offworld", "do you have a telephone?") == "telephone"
    assert Cues.load().find("offworld", "do you have a telephone?") is None
    assert cues.find("social", "Ahoy there") and not Cues.load().find("social", "Ahoy there")
    assert Cues.load().find("form", "sing a song") == "song" or Cues.load().find("form", "sing a song") == "sing"
    assert cues.find("form", "a song") is None
    assert cues.answer_type("How many bells are there?") == "number"
    personal = Cues.load()
    assert personal.find("personal", "What's your favourite time of day?") == "favourite"
    assert personal.find("personal", "Do you ever miss the sea?") == "you ever"
    # "You ever find out who ...?" asks for a fact, not for the character's experience
    assert personal.find("personal", "You ever find out who rang the bell?") is None
    assert personal.find("personal", "You ever been out to the gorge?") == "You ever"
    # ... nor "you ever hear how much ...?"; gossip, rumours and whispers *about* something are its topic, not a
    # form or small talk (development, gated questions asked as small talk: routed `both` and generated before)
    assert personal.find("personal", "you ever hear how much that chain offered for the practice?") is None
    assert personal.find("personal", "Heard any rumours about the ship on new-moon nights?") is None
    assert personal.find("form", "Any gossip on what the lifties say over the radio?") is None
    assert personal.find("form", "I keep hearing whispers about a clinic that isn't on any roster.") is None
    assert personal.find("personal", "Any gossip?") == "gossip"
    assert personal.find("form", "Tell me like a bit of gossip") and personal.find("form", "whisper it to me")
    assert personal.find("personal", "How many people live here?") is None
    assert personal.find("personal", "Where is the nearest inn?") is None
    assert personal.answer_type("What's your cat called?") == personal.answer_type("What's the name of it?") == "person"
    assert personal.answer_type("hey, who was your captain", opens=True) == "person"
    assert personal.answer_type("I'll fail everyone who is counting on me.") == "person"
    assert personal.answer_type("I'll fail everyone who is counting on me.", opens=True) is None  # asks nothing
    assert cues.answer_type("What do the pages call the stair?") == "person"


@pytest.mark.parametrize("world", ["eterna", "kestrel"])
def test_router_accuracy_on_the_development_worlds(embedder, tmp_path, world):
    """Quality gate on the two development worlds (the sealed world is only measured by benchmarks/)."""
    cfg = EternaConfig.load(REPO / "configs" / f"{world}.yaml")
    cfg = cfg.model_copy(update={"models": cfg.models.model_copy(update={"cache_dir": tmp_path / "models"})})
    rebuild_index(cfg.paths.corpus, tmp_path / "index", embedder)
    index = LoreIndex.open(tmp_path / "index", embedder)
    router = build_router(cfg, Cast.load(cfg.paths.npcs, cfg.world), embedder, index, Cues.load(cfg.world.cues))
    report = router_report(router, index, load_router_items(cfg.paths.eval / "router.jsonl"))
    assert report["n"] >= 60
    assert report["accuracy"] >= 0.85, json.dumps(report["errors"][:10])


def test_the_lore_feature_is_one_search_in_training_a_turn_and_eval(tiny_world, embedder, tmp_path):
    """The router learns, routes and is evaluated on the same lore match: the best cosine among its retriever's
    unfiltered top k. A lexical retriever's top hit is not the dense top hit for a line that shares a rare word with
    one chunk but means another, so an evaluation that searched otherwise would report another score."""
    from app.router import lore_match
    from retrieval.retrievers.bm25 import LexicalRetriever
    from retrieval.retrievers.dense import DenseRetriever

    index, cues = tiny_world
    docs = {}
    for c in index.chunks:
        docs.setdefault(c.doc, (c.title, []))[1].append(c.text)
    examples = synthesise([(t, " ".join(x)) for t, x in docs.values()], ["Ilse"], cues)
    lexical = Router(embedder, cues, examples, index, retriever=LexicalRetriever(), k=1, cache_dir=tmp_path)
    dense = Router(embedder, cues, examples, index, cache_dir=tmp_path)
    assert lexical.key != dense.key  # the search is part of what made the weights
    assert Router(embedder, cues, examples, index, retriever=DenseRetriever(), k=1).key not in (lexical.key, dense.key)
    differ = []
    for text in ("Who built the clock?", "how many books may i take home", "The clock is broken, fix my books",
                 "thirteen borrowers and a lamp", "What does the archive keep?"):
        v = embedder.encode([text])[0]
        lex, top = lore_match(lexical.lore_hits(index, text, v)), index.search_vector(v, 1)[0].score
        report = router_report(lexical, index, [{"text": text, "label": "offworld"}])  # a wrong label: an error
        why = report["errors"][0]["why"] if report["errors"] else lexical.route(text, v, lex).reason
        assert f"lore match {lex:.2f}" in why  # eval searched as the router does
        differ.append(round(lex, 2) != round(top, 2))
    assert any(differ)  # the two searches do disagree on some line, so the assertion above can fail


def test_offworld_takes_a_majority_or_a_cue(tiny_world, embedder):
    """A line no synthesised label fits well wins `offworld` with a plurality ("What's the wifi like?" at about
    0.48; "What's your cat called?" was one before the router learnt the character's own record as `fact`): below
    `router.offworld_min` it takes the next most likely label. A clear out-of-world
    line keeps `offworld`, and so does a line with an `offworld` cue, whatever the floor."""
    index, cues = tiny_world
    plain = _router(embedder, index, cues)
    floor = _router(embedder, index, cues)
    floor.offworld_min = EternaConfig().router.offworld_min

    def route(router, text):
        v = embedder.encode([text])[0]
        return router.route(text, v, index.search_vector(v, 1)[0].score)

    odd = "What's the wifi like?"
    before, after = route(plain, odd), route(floor, odd)
    p = before.signals["probabilities"]
    assert before.label == "offworld" and p["offworld"] < floor.offworld_min  # the plurality the floor is for
    nxt = max((k for k in p if k != "offworld"), key=p.get)
    assert after.label == nxt != "offworld" and after.reason.startswith(f"offworld {p['offworld']:.2f} < 0.5, so ")
    assert route(floor, "is this game made in unity or unreal").label == "offworld"  # a majority
    floor.offworld_min = 1.0
    cued = route(floor, "What's the best smartphone to buy?")
    assert cued.label == "offworld" and cued.signals["cues"]["offworld"] == "smartphone"
    assert route(floor, "is this game made in unity or unreal").label != "offworld"  # no cue: the floor applies


@pytest.mark.parametrize("text, label", [
    ("Who was your captain?", "fact"),  # style by probability; a typed question opens the line
    ("hey Ilse, who was your teacher", "fact"),  # ... or a clause after a greeting
    ("how many friends do you have?", "fact"),
    ("I'm afraid I'll fail everyone who is counting on me.", "style"),  # "who" opens no clause: asks nothing
    ("Who do you like most here, Ilse?", "style"),  # the character's own taste (a `personal` cue)
])
def test_small_talk_does_not_ask_who_when_where_or_how_many(tiny_world, embedder, text, label):
    """A line whose probabilities say `style` but which asks a name, time, place or number goes to `fact` (the
    character's record is in the lore), and the reason says why; a question about the character's own tastes or a
    "who" inside a statement stays small talk."""
    index, cues = tiny_world
    router = _router(embedder, index, cues)
    v = embedder.encode([text])[0]
    lore = index.search_vector(v, 1)[0].score
    probs = dict(zip(LABELS, router.probabilities(text, v, lore)))
    route = router.route(text, v, lore)
    assert max(probs, key=probs.get) == "style"  # the probabilities alone would make each of these small talk
    assert route.label == label, route.reason
    if label == "fact":
        assert f"style {probs['style']:.2f}, but it asks a {cues.answer_type(text)}, so fact" in route.reason
