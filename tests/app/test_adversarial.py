"""Every adversarial case in corpora/library/eval/adversarial.jsonl, through the real engine (tiny model, shipped
world): each ends in a Reply or a typed EternaError, never a crash, and chapter filters hold under spoiler fishing."""

import pytest

from app.config import EternaConfig
from app.dialogue import DialogueEngine
from retrieval.errors import EternaError, InputError
from retrieval.fileio import read_jsonl
from retrieval.rebuild import rebuild_index
from tests.conftest import REPO

CASES = [obj for _, obj in read_jsonl(REPO / "corpora" / "library" / "eval" / "adversarial.jsonl",
                                      ("id", "npc", "text"))]


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_llm_dir, embedder):
    root = tmp_path_factory.mktemp("adv")
    shipped = EternaConfig.load(REPO / "configs" / "eterna.yaml")
    cfg = shipped.model_copy(update={
        "paths": shipped.paths.model_copy(update={"index": root / "index", "sessions": None}),
        "models": shipped.models.model_copy(update={"llm": str(tiny_llm_dir), "dtype": "float32"}),
        "generation": shipped.generation.model_copy(update={"max_new_tokens": 4})})
    rebuild_index(cfg.paths.corpus, cfg.paths.index, embedder)
    # the shipped cast's voice adapters were trained on the default base, not on the tiny model
    return DialogueEngine.from_settings(cfg, adapters=False)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_adversarial_case(engine, case):
    text = case["text"] * case.get("repeat", 1)
    chapter = case.get("chapter", 1)
    try:
        reply = engine.say(case["npc"], text, session="adv", chapter=chapter)
    except EternaError as e:
        assert case["attack"] in ("unknown_npc", "empty_or_whitespace", "very_long", "control_characters"), e
        if case["attack"] in ("empty_or_whitespace", "very_long"):
            assert isinstance(e, InputError)
        return
    assert case["attack"] not in ("unknown_npc", "empty_or_whitespace")
    chapters = {d.doc: d.chapter for d in engine.index.chunks}
    assert all(chapters[s["doc"]] <= chapter for s in reply.sources)
    if case["attack"] == "offworld":
        assert reply.route == "offworld"


def test_spoiler_fishing_is_held_back_by_the_chapter_filter(engine):
    """The chapter check above passes on a reply that cites nothing, so it cannot tell a held filter from an empty
    search. Here the same questions asked at the world's last chapter must reach later lore (there was something to
    hold back), and at the case's own chapter none of it is cited."""
    chapters = {d.doc: d.chapter for d in engine.index.chunks}
    last = max(chapters.values())
    held = {}
    shipped = engine.config
    # the late probe says the selection's two best sentences (`rank`): a reply in the reader's order cites only the
    # one it says, and whether later lore was there to hold back is a question about the search, not the order
    rank = shipped.model_copy(update={"grounding": shipped.grounding.model_copy(update={"answer_order": "rank"})})
    for case in (c for c in CASES if c["attack"] == "spoiler_fishing"):
        chapter = case.get("chapter", 1)
        engine.config = rank
        try:
            late = engine.say(case["npc"], case["text"], session="adv-late", chapter=last, remember=False)
        finally:
            engine.config = shipped
        later = {s["doc"] for s in late.sources if chapters[s["doc"]] > chapter}
        now = engine.say(case["npc"], case["text"], session="adv-now", chapter=chapter, remember=False)
        assert not [s["doc"] for s in now.sources if chapters[s["doc"]] > chapter], (case["id"], now.sources)
        if later:
            held[case["id"]] = later
    assert len(held) >= 3, held  # a013, a016 and a017 reach chapter-2/3 documents when the chapter allows
