"""RAFT data from a world's own index, and the grounding adapter it trains, on the tiny corpus and model."""

import json

import pytest

from app.cli import main
from retrieval.errors import CorpusError
from retrieval.index import LoreIndex
from retrieval.rebuild import rebuild_index
from tests.conftest import write_project
from tuning.raft import build_raft_items


@pytest.fixture
def chunks(tiny_corpus, embedder, tmp_path):
    rebuild_index(tiny_corpus, tmp_path / "index", embedder)
    return LoreIndex.open(tmp_path / "index", embedder).chunks


def test_items_hold_their_gold_sentence_or_say_idk(chunks):
    items = build_raft_items(chunks, n=60, idk_share=0.25, seed=1, min_sentences=6)
    assert items == build_raft_items(chunks, n=60, idk_share=0.25, seed=1, min_sentences=6)  # deterministic
    idk = [it for it in items if it.answer is None]
    assert 5 <= len(idk) <= 30
    for it in items:
        texts = [s for _, s in it.evidence]
        assert len({c.doc for c, _ in it.evidence}) >= 2
        if it.answer is not None:
            assert it.answer in texts
    answered = [it for it in items if it.answer is not None]
    assert all(any(w in it.answer for w in it.question.replace("?", "").replace(".", "").split() if w[:1].isupper())
               for it in answered)


def test_too_little_lore_is_a_clear_error(chunks):
    with pytest.raises(CorpusError, match="usable sentences .* at least 20"):
        build_raft_items(chunks[:1], n=10)


EXTRA = """---
title: The {n} Gallery
kind: room
npc_scope: all
chapter: 1
---
# The {n} Gallery

The {n} Gallery was painted by Master Aurelio {n} in the spring of 16{i}0. Its ceiling shows the Night of
Lanterns above the harbour of Port {n}. Twelve oak benches line the walls for the readers of the {n} school.
A brass plaque by the door names the patron, Dona Ines {n}, who paid for the gilding in 16{i}2. The caretaker,
Old Bartomeu {n}, sweeps the floor each morning before the bell of Saint {n} rings. Visitors may not bring
candles past the iron rail that Captain Ferran {n} set up after the small fire.
"""


def test_train_raft_cli_makes_a_grounding_adapter_the_engine_uses(capsys, tmp_path, tiny_llm_dir):
    cfg = write_project(tmp_path / "proj", str(tiny_llm_dir))
    assert main(["--config", str(cfg), "index", "rebuild"]) == 0
    capsys.readouterr()
    rc = main(["--config", str(cfg), "train", "raft", "--npc", "warden", "--examples", "16", "--max-steps", "1"])
    assert rc == 2 and "usable sentences" in capsys.readouterr().err  # six tiny documents are too little lore
    for i, n in enumerate(("Amber", "Cobalt", "Vermilion", "Saffron")):
        (cfg.parent / "lore" / f"{n.lower()}.md").write_text(EXTRA.format(n=n, i=i + 1))
    assert main(["--config", str(cfg), "index", "rebuild"]) == 0
    capsys.readouterr()
    rc = main(["--config", str(cfg), "train", "raft", "--all", "--examples", "16", "--max-steps", "1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["built_by"] == "eterna train raft" and out["raft"]["items"] == 16
    assert out["raft"]["chapter"] == 1 and out["metrics"]["steps"] == 1
    cfg.write_text(cfg.read_text() + f"grounding:\n  adapter: {out['adapter']}\n  answer: generate\n")
    from app.dialogue import GROUNDING_ADAPTER, DialogueEngine

    engine = DialogueEngine.from_config(cfg)
    assert GROUNDING_ADAPTER in engine.generator.adapters
    reply = engine.say("director", "Who built the great clock?")
    assert reply.route == "fact" and reply.tokens["reply"] >= 1
    assert main(["--config", str(cfg), "train", "raft"]) == 2
    assert "--npc ID or --all" in capsys.readouterr().err
