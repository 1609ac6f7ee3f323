"""State in the turn (issue 21): over random states, no gated lore reaches the messages sent to the backend, the
memory fed to the prompt, the reply or its sources; state going backwards hides remembered exchanges; bad states are
422s / InputErrors; `eval facts` lines carry a state. The tiny real model, the real embedder, a tiny corpus."""

from __future__ import annotations

import json
import random

import pytest

from app.config import EternaConfig
from app.dialogue import DialogueEngine
from app.evaluation.facts import facts_report
from app.memory import SessionMemory
from app.turn import hidden_docs
from retrieval.errors import InputError
from retrieval.gates import State
from retrieval.rebuild import rebuild_index
from tests.conftest import write_corpus, write_project
from tests.retrieval.test_gated_search import GATED, SECRETS, gated_lore

QUESTIONS = {"amber-vault": "Who counted the seeds in the amber vault?",
             "guild-ledger": "Who leads the binders in the guild ledger?",
             "night-bell": "For which watchman does the lantern bell ring at night?",
             "oath": "With whom do the readers of the candle oath meet?"}
STATE_SPACE = {"carries.key": ["amber", "blue", None], "rep.guild": [1, 2, 3, "2", None],
               "flags.burned": [True, False, None], "time.of_day": ["day", "night", None],
               "quest.oath": [True, False, None]}


class Recording:
    """The engine's real backend, recording every message list it is asked to continue."""

    def __init__(self, backend):
        self.backend, self.sent = backend, []

    def stream(self, messages, decoding, adapter=None):
        self.sent.append(messages)
        return self.backend.stream(messages, decoding, adapter=adapter)

    def __getattr__(self, name):
        return getattr(self.backend, name)


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_llm_dir, embedder):
    root = tmp_path_factory.mktemp("state")
    path = write_project(root / "proj", str(tiny_llm_dir), sessions=True)
    write_corpus(root / "proj" / "lore", gated_lore())
    cfg = EternaConfig.load(path)
    rebuild_index(cfg.paths.corpus, cfg.paths.index, embedder)
    base = DialogueEngine.from_config(path)
    return base.variant(generator=Recording(base.generator))


def random_state(rng: random.Random) -> dict:
    state: dict = {}
    for name, values in STATE_SPACE.items():
        value = rng.choice(values)
        if value is not None:
            head, leaf = name.split(".")
            state.setdefault(head, {})[leaf] = value
    return state


def shut(state: dict) -> set[str]:
    """The gated documents whose gate is shut in `state` (the plain-Python oracle of test_gated_search)."""
    return {doc for doc, (_req, holds, _text) in GATED.items() if not holds(state)}


def test_no_gated_lore_leaks_over_random_states(engine):
    rng = random.Random(21)
    leaks, opened, closed_checks = [], 0, 0
    for session in range(6):
        sid = f"leak-{session}"
        for _turn in range(7):
            state = random_state(rng)
            doc = rng.choice(list(QUESTIONS))
            text = QUESTIONS[doc] if rng.random() < 0.7 else "Good evening, how are you?"
            engine.generator.sent.clear()
            reply = engine.say("director", text, session=sid, state=state, route=rng.choice(["fact", "both", "style"]))
            hidden = shut(state)
            sent = json.dumps(engine.generator.sent, ensure_ascii=False)
            history, summary, _docs, _n = engine.memory.recall(
                sid, "director", hidden_docs(engine.index, engine.cast.get("director").scope(1, state)))
            fed = json.dumps([history, summary], ensure_ascii=False)
            seen = json.dumps(reply.to_json(), ensure_ascii=False) + sent + fed
            for d in hidden:
                closed_checks += 1
                if SECRETS[d] in seen or d in {s["doc"] for s in reply.sources}:
                    leaks.append((sid, state, text, d))
            opened += any(SECRETS[d] in reply.text for d in set(GATED) - hidden)
    assert leaks == []
    assert opened > 0 and closed_checks > 50  # the gates were open often enough to be remembered, shut to be tested


def test_state_going_backwards_hides_the_exchanges_that_drew_on_the_document(engine):
    open_, shut_ = {"carries": {"key": "amber"}}, {"carries": {"key": "blue"}}
    first = engine.say("director", QUESTIONS["amber-vault"], session="back", state=open_, route="fact")
    assert "Verdún" in first.text and first.sources[0]["doc"] == "amber-vault"
    engine.say("director", "Good evening.", session="back", state=open_, route="style")  # drew on it via its prompt
    engine.generator.sent.clear()
    later = engine.say("director", "Tell me more, friend.", session="back", state=shut_, route="style")
    assert "Verdún" not in json.dumps(engine.generator.sent, ensure_ascii=False)
    assert later.context["memory_hidden"] == 2
    engine.generator.sent.clear()
    again = engine.say("director", "And now?", session="back", state=open_, route="style")
    assert "Verdún" in json.dumps(engine.generator.sent, ensure_ascii=False) and again.context["memory_hidden"] == 0
    gated = engine.say("director", QUESTIONS["amber-vault"], session="back2", state=shut_, route="fact")
    assert gated.text == engine.idk_line(engine.cast.get("director")) and gated.sources == []


def test_session_records_carry_their_documents_and_older_files_still_load(tmp_path):
    (tmp_path / "old.jsonl").write_text(json.dumps({"npc": "w", "user": "hi", "reply": "hello"}) + "\n" +
                                        json.dumps({"npc": "w", "user": "x", "reply": "y", "docs": "bad"}) + "\n",
                                        encoding="utf-8")
    memory = SessionMemory(1, tmp_path)
    assert memory.context("old", "w") == ([("x", "y")], "The player said earlier: hi")
    memory.add("old", "w", "Who keeps the vault?", "Tomasa does.", docs={"vault"})
    assert json.loads((tmp_path / "old.jsonl").read_text().splitlines()[-1])["docs"] == ["vault"]
    fresh = SessionMemory(1, tmp_path)  # another process reads it back
    assert fresh.recall("old", "w", frozenset({"vault"}))[0] == []
    assert fresh.recall("old", "w")[0] == [("Who keeps the vault?", "Tomasa does.")]
    fresh.add("old", "w", "Thanks.", "Welcome.")  # the vault exchange moves into the summary
    recent, summary, docs, left_out = fresh.recall("old", "w", frozenset({"vault"}))
    assert recent == [("Thanks.", "Welcome.")] and "vault" not in summary and left_out == 1 and docs == frozenset()
    assert "Who keeps the vault?" in fresh.recall("old", "w")[1]


@pytest.mark.parametrize("bad", [[1], "night", {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}},
                                 {"big": "x" * 70_000}, {"inv": ["lamp"]}])
def test_a_bad_state_is_an_input_error_and_a_422_naming_the_field(engine, bad):
    from fastapi.testclient import TestClient

    from app.server import create_app

    with pytest.raises(InputError, match="state"):
        engine.say("archivist", "Hello.", state=bad)
    client = TestClient(create_app(engine))
    for url, body in (("/v1/npcs/archivist/say", {"text": "Hello.", "state": bad}),
                      ("/v1/npcs/archivist/say/stream", {"text": "Hello.", "state": bad}),
                      ("/v1/chat/completions", {"model": "archivist", "state": bad,
                                                "messages": [{"role": "user", "content": "Hello."}]}),
                      ("/v1/chat/completions", {"model": "archivist", "state": bad, "stream": True,
                                                "messages": [{"role": "user", "content": "Hello."}]})):
        r = client.post(url, json=body)
        assert r.status_code == 422 and "state" in r.text, (url, r.text)


def test_the_server_and_eval_facts_carry_the_state(engine):
    from fastapi.testclient import TestClient

    from app.server import create_app

    client = TestClient(create_app(engine))
    body = {"text": QUESTIONS["night-bell"], "state": {"time": {"of_day": "night"}}}
    assert "Querol" in client.post("/v1/npcs/director/say", json=body).json()["text"]
    ask = [{"role": "user", "content": QUESTIONS["night-bell"]}]
    chat = client.post("/v1/chat/completions", json={"model": "director", "state": {"time": {"of_day": "day"}},
                                                     "messages": ask})
    assert chat.status_code == 200 and "Querol" not in chat.text
    items = [{"npc": "director", "question": QUESTIONS["oath"], "answers": ["Llull"], "chapter": 1, "doc": "oath",
              "state": state, "line": n} for n, state in enumerate([{}, {"quest": {"oath": True}}], start=1)]
    report = facts_report(engine, items, keep_items=True)
    assert report["n_gated"] == 1 and report["idk_gated"] == 1.0 and report["gate_leaks"] == 0
    assert report["contains_gold"] == 1.0 and [r["gated"] for r in report["items"]] == [True, False]
    assert State.of(items[1]["state"]).get("quest.oath") is True


def test_validate_warns_on_names_the_state_schema_lacks_and_types_that_never_compare(tmp_path):
    from pydantic import ValidationError

    from app.config import WorldConfig
    from app.validate import gate_warnings
    from retrieval.corpus import load_corpus

    docs = load_corpus(write_corpus(tmp_path / "lore", gated_lore()))
    schema = WorldConfig(state={"carries": {"key": "string"}, "rep.guild": "string", "flags": {"burned": "bool"},
                                "time": {"of_day": "string"}}).state
    assert schema["rep.guild"] == "string" and schema["carries.key"] == "string"
    warnings = gate_warnings(docs, schema)
    assert any("oath.md:6" in w and "'quest.oath' is not in the world's state schema" in w for w in warnings)
    assert any("guild-ledger.md:6" in w and "compares string with number" in w for w in warnings)
    assert len(warnings) == 2 and gate_warnings(docs, None) == []  # no schema: nothing to warn about here
    with pytest.raises(ValidationError, match="not one of bool, number, string, object"):
        WorldConfig(state={"rep": {"guild": "integer"}})
