"""Quality gates on the shipped worlds: `eterna validate` passes on each; the Library keeps the sizes the foundation
promises; every world's style sets teach form, not facts."""

import re
from collections import Counter

import pytest

from app.config import Cast, EternaConfig
from app.validate import validate_project
from retrieval.corpus import load_corpus
from retrieval.fileio import read_jsonl
from tests.conftest import REPO
from tuning.data import load_chat_examples, load_preferences

CORPORA = REPO / "corpora" / "library"
CAST = Cast.load(REPO / "configs" / "npcs.yaml")
WORLDS = ["eterna", "kestrel", "sealed"]  # configs/<name>.yaml; `sealed` is measured only, never tuned on


@pytest.mark.parametrize("world", WORLDS)
def test_validate_passes_on_every_shipped_world(world):
    report = validate_project(EternaConfig.load(REPO / "configs" / f"{world}.yaml"))
    assert report["eval_facts"]["in_scope"] >= 40
    assert report["lore_documents"] >= 12 and len(report["lore_chapters"]) >= 2
    assert report["gate_warnings"] == []  # every `requires` name is in the world's state schema, types agree
    if world != "sealed":  # the sealed world's files are written by another hand
        assert report["lore_gated"] >= 4 and report["eval_facts"]["gated"] >= 12


def test_the_worlds_are_different():
    cfgs = [EternaConfig.load(REPO / "configs" / f"{w}.yaml") for w in WORLDS]
    assert len({c.world.name for c in cfgs}) == 3
    assert len({tuple(c.world.kinds) for c in cfgs}) == 3
    assert len({c.paths.index for c in cfgs}) == 3


@pytest.mark.parametrize("world", ["kestrel", "sealed"])
def test_other_worlds_style_sets_teach_voice_without_world_facts(world):
    cfg = EternaConfig.load(REPO / "configs" / f"{world}.yaml")
    cast = Cast.load(cfg.paths.npcs, cfg.world)
    titles = {d.title.lower() for d in load_corpus(cfg.paths.corpus)}
    for npc in cast.npcs:
        replies = [m["content"] for ex in load_chat_examples(cfg.paths.style / f"{npc.id}.jsonl")
                   for m in ex if m["role"] == "assistant"]
        assert len(replies) >= 15
        assert not [r for r in replies if any(t in r.lower() for t in titles)]
        if npc.markers:
            assert sum(npc.markers.match(r) for r in replies) / len(replies) >= 0.9, npc.id


def test_lore_size_kinds_and_chapters():
    docs = load_corpus(CORPORA / "lore")
    assert len(docs) >= 40
    assert set(Counter(d.kind for d in docs)) == {"room", "book", "character", "history", "rule", "item"}
    late = sum(d.chapter >= 2 for d in docs)
    assert 0.2 <= late / len(docs) <= 0.4
    assert any(d.chapter == 3 for d in docs)
    assert all(200 <= len(d.body.split()) <= 700 for d in docs), [d.id for d in docs if len(d.body.split()) < 200]


@pytest.mark.parametrize("npc", [n.id for n in CAST.npcs])
def test_style_set_teaches_voice_without_world_facts(npc):
    examples = load_chat_examples(CORPORA / "style" / f"{npc}.jsonl")
    assert len(examples) >= 100
    users = [m["content"] for ex in examples for m in ex if m["role"] == "user"]
    assert len(set(users)) == len(users), "repeated player lines"
    openings = Counter(" ".join(u.lower().split()[:2]) for u in users)
    assert openings.most_common(1)[0][1] <= len(users) * 0.1, openings.most_common(3)  # not one template
    replies = [m["content"] for ex in examples for m in ex if m["role"] == "assistant"]
    titles = {d.title.lower() for d in load_corpus(CORPORA / "lore")}
    leaks = [r for r in replies if re.search(r"\b1[0-9]{3}\b", r) or any(t in r.lower() for t in titles)]
    assert not leaks, leaks[:3]


@pytest.mark.parametrize("npc", [n.id for n in CAST.npcs])
def test_preference_pairs(npc):
    assert len(load_preferences(CORPORA / "preferences" / f"{npc}.jsonl")) >= 60


def test_eval_sets():
    labels = Counter(obj["label"] for _, obj in read_jsonl(CORPORA / "eval" / "router.jsonl", ("text", "label")))
    assert sum(labels.values()) >= 120 and min(labels[k] for k in ("fact", "style", "both", "offworld")) >= 25
    seeds = {obj["text"].lower() for _, obj in read_jsonl(CORPORA / "router" / "seeds.jsonl")}
    held_out = {obj["text"].lower() for _, obj in read_jsonl(CORPORA / "eval" / "router.jsonl")}
    assert not seeds & held_out
    assert len(list(read_jsonl(CORPORA / "eval" / "adversarial.jsonl", ("npc", "text", "attack")))) >= 40
    prompts = [obj for _, obj in read_jsonl(CORPORA / "eval" / "style_prompts.jsonl", ("npc", "text"))]
    assert {p["npc"] for p in prompts} == {n.id for n in CAST.npcs}


@pytest.mark.parametrize("npc", [n for n in CAST.npcs if n.markers], ids=lambda n: n.id)
def test_style_set_follows_the_voice_markers(npc):
    replies = [m["content"] for ex in load_chat_examples(CORPORA / "style" / f"{npc.id}.jsonl")
               for m in ex if m["role"] == "assistant"]
    assert sum(npc.markers.match(r) for r in replies) / len(replies) >= 0.95


def test_tuned_cast_matches_the_cast_but_for_adapters():
    """configs/npcs.tuned.yaml is the shipped cast speaking through adapters trained here (`make adapters`), so a
    fresh training can be heard (`make demo-tuned`) before `make ship-adapters` copies it into the project."""
    tuned = Cast.load(REPO / "configs" / "npcs.tuned.yaml")
    assert [n.model_dump(exclude={"adapter"}) for n in tuned.npcs] == \
        [n.model_dump(exclude={"adapter"}) for n in CAST.npcs]
    assert all(n.adapter == (REPO / ".eterna" / "adapters" / n.id).resolve() for n in tuned.npcs)
    assert all(n.adapter == (CORPORA / "adapters" / n.id).resolve() for n in CAST.npcs)
