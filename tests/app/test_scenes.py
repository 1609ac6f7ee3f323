"""Scenes with several characters on the tiny real world (tests/fixtures_data.py): addressing and impersonation,
the responder policy, scope isolation (a scoped fact reaches another character only once said aloud), the
director, the shared transcript in the session store, bad input, the server routes and the CLI."""

import json

import pytest
import yaml

from app.config import Cast
from app.scene_policy import RESPONDERS, Addresser, Line, register_responder
from app.scenes import PLAYER, SceneError
from tests.fixtures_data import NPCS_YAML

KEY = "Which key opens the crypt gate?"  # only the warden's own lore (wardens-keys, npc_scope [warden]) says


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_llm_dir, embedder):
    from tests.conftest import tiny_engine

    return tiny_engine(tmp_path_factory.mktemp("scenes"), str(tiny_llm_dir), embedder, sessions=True)


def _cast():
    return Cast.model_validate(yaml.safe_load(NPCS_YAML))


def test_addressing_names_vocatives_and_impersonation():
    cast = _cast()
    a = Addresser([cast.get("archivist"), cast.get("warden"), cast.get("director")])
    assert a.read("Varga, how many books may I borrow?").npc == "archivist"
    assert a.read("Tell me, Rodrigo, is the crypt open?").npc == "warden"
    assert a.read("Is the crypt open, Capitan?").npc == "warden"  # accents off: a player types either
    assert a.read("How many books may I borrow?").npc is None
    said = a.read("Ferrán: I confess I lost the keys.")
    assert said.impersonates == "warden" and said.npc is None  # the player's line, never the warden's
    assert a.read("Varga: and what say you, Maestra Ilse Varga?").impersonates == "archivist"


def test_the_responder_whose_own_lore_answers_speaks(engine):
    scene = engine.scene("hall", npcs=["archivist", "warden"], session="resp", reactions=0)
    turn = scene.say(KEY)
    assert turn.how == "policy" and turn.responder == "warden", turn.why
    assert turn.scores["warden"] > turn.scores["archivist"]
    assert turn.replies[0].npc == "warden" and "red" in turn.replies[0].text.lower()
    assert turn.next_speaker == "warden"


def test_a_scoped_fact_reaches_another_character_only_once_said_aloud(engine):
    scene = engine.scene("vault", npcs=["archivist", "warden"], session="iso", reactions=0)
    before = scene.say(KEY, to="archivist").replies[0]
    docs = {s["doc"] for s in before.sources}
    assert "wardens-keys" not in docs and "red" not in before.text.lower()
    assert before.grounding["answer"] == "idk"
    said = scene.say(KEY, to="warden").replies[0]
    assert "red" in said.text.lower()
    after = scene.say(KEY, to="archivist").replies[0]
    assert "wardens-keys" not in {s["doc"] for s in after.sources}  # never the warden's lore itself
    heard = [e for e in after.grounding["evidence"] if e["doc"] == "scene:vault"]
    assert heard and heard[0]["text"].startswith("Capitán Rodrigo Ferrán said:")  # said aloud, speaker named
    assert "red" in after.text.lower()


def test_reactions_speak_in_their_own_scope(engine):
    scene = engine.scene("keys", npcs=["archivist", "warden"], session="react", reactions=1)
    turn = scene.say(KEY, to="archivist")  # the archivist does not know; the warden, whose lore does, speaks up
    assert [r.npc for r in turn.replies] == ["archivist", "warden"]
    assert turn.replies[1].reason.startswith("reaction") and "red" in turn.replies[1].text.lower()
    quiet = engine.scene("keys2", npcs=["archivist", "warden"], session="react", reactions=0).say(KEY, to="archivist")
    assert len(quiet.replies) == 1


def test_a_reaction_that_names_what_its_prompt_lacks_is_caught():
    from app.scenes import invents

    prompt = [{"role": "system", "content": "You are Pell, a page. Style: ends with 'Right then.'"},
              {"role": "user", "content": 'Maestra Ilse Varga says: "The crypt key is red."'}]
    assert invents("I heard it from Amina Blackheart in 1942. Right then.", prompt) == ["Amina Blackheart", "1942"]
    assert invents("Maestra Varga is right, the key is red. Right then.", prompt) == []
    assert invents("Pell agrees with Ilse.", prompt) == []


def test_a_free_reaction_names_nothing_its_prompt_did_not_hold(engine):
    from app.evaluation.quality import invented_specifics
    from app.prompt import system_prompt

    scene = engine.scene("chatter", npcs=["archivist", "warden"], session="free", reactions=1)
    lines = ["Good evening to you both.", "Tell me about your day, Maestra.", "What do you think of the weather?",
             "Do you like music?", "Say something about the candles."]
    free = []
    for line in lines:
        turn = scene.say(line, to="archivist")
        free += [r for r in turn.replies[1:] if r.reason.startswith("reaction (to")]
    said = " ".join(x["text"] for x in scene.transcript.lines())
    c = engine.config
    for r in free:  # the prompt held the speaker's card and what was said aloud, nothing more
        allowed = f"{system_prompt(engine.cast.get(r.npc), c.world, c.prompts)} {said}"
        assert invented_specifics(r.text, allowed) == [], r.text


def test_the_director_frames_and_narrates_only_open_lore(engine):
    scene = engine.scene("clock-room", npcs=["archivist", "warden"], director="director", session="dir")
    first = scene.say("Good evening.", chapter=1)
    frame = first.replies[0]
    assert frame.npc == "director" and frame.route == "narration"
    assert "Maestra Ilse Varga" in frame.text and "Capitán Rodrigo Ferrán" in frame.text
    look = scene.say("I look around.", chapter=1)
    assert look.responder == "director" and look.how == "director"
    cited = {s["doc"] for r in first.replies + look.replies if r.npc == "director" for s in r.sources}
    assert "wardens-keys" not in cited and "the-fire-truth" not in cited  # scoped lore; a later chapter
    assert all(r.npc != "director" or "said" not in r.text for r in look.replies)
    lines = scene.transcript.lines()
    assert [x["speaker"] for x in lines][:2] == ["director", PLAYER]  # narration counts as said aloud


def test_transcript_is_shared_through_the_session_store(engine):
    scene = engine.scene("store", npcs=["archivist", "warden"], session="shared", reactions=0)
    scene.say("Ferrán: I confess I lost the keys.")
    again = engine.scene("store", npcs=["archivist", "warden"], session="shared")  # another request, same scene
    lines = again.transcript.lines()
    assert lines[0] == {"speaker": PLAYER, "text": "Ferrán: I confess I lost the keys.", "role": "line",
                        "impersonates": "warden"}
    assert lines[1]["speaker"] == "archivist"  # the impersonated warden does not answer its "own" words
    assert (engine.memory.store / "shared--scene--store.jsonl").is_file()


def test_bad_input_names_the_field(engine):
    with pytest.raises(SceneError, match="^npcs: unknown character 'ghost'"):
        engine.scene("x", npcs=["archivist", "ghost"])
    with pytest.raises(SceneError, match="^npcs: a scene needs at least two"):
        engine.scene("x", npcs=["archivist"])
    with pytest.raises(SceneError, match="^director: "):
        engine.scene("x", npcs=["archivist", "warden"], director="archivist")
    with pytest.raises(SceneError, match="^scene: "):
        engine.scene("no spaces", npcs=["archivist", "warden"])
    scene = engine.scene("x", npcs=["archivist", "warden"], session="bad")
    with pytest.raises(SceneError, match="^to: 'director' is not in this scene"):
        scene.say("Hello", to="director")
    assert scene.transcript.lines() == []  # nothing was said


def test_a_policy_is_a_registry_entry(engine):
    @register_responder("test-always-archivist")
    def always(line: Line):
        return "archivist", "test"

    try:
        turn = engine.scene("p", npcs=["warden", "archivist"], session="pol", reactions=0,
                            policy="test-always-archivist").say(KEY)
        assert turn.responder == "archivist" and turn.why == "test"
    finally:
        RESPONDERS.pop("test-always-archivist")
    with pytest.raises(SceneError, match="^policy: "):
        engine.scene("p", npcs=["warden", "archivist"], policy="nope")


def test_server_scene_routes(engine, tmp_path):
    from fastapi.testclient import TestClient

    from app.server import create_app, iter_sse

    folder = tmp_path / "scenes"
    folder.mkdir()
    (folder / "hall.jsonl").write_text(json.dumps({"scene": "hall", "npcs": ["archivist", "warden"]}) + "\n")
    scenes_engine = engine.variant(config=engine.config.model_copy(update={
        "paths": engine.config.paths.model_copy(update={"scenes": folder})}))
    client = TestClient(create_app(scenes_engine))
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert "scene:hall" in ids and "warden" in ids
    r = client.post("/v1/scenes/hall/say", json={"text": KEY, "session": "srv", "reactions": 0})
    assert r.status_code == 200 and r.json()["replies"][0]["npc"] == "warden" and r.json()["next_speaker"] == "warden"
    r = client.post("/v1/scenes/hall/say", json={"text": "Hi", "to": "director", "session": "srv"})
    assert r.status_code == 422 and r.json()["detail"].startswith("to:")
    r = client.post("/v1/scenes/adhoc/say", json={"text": "Hi", "npcs": ["archivist", "nobody"]})
    assert r.status_code == 422 and r.json()["detail"].startswith("npcs:")
    assert client.post("/v1/scenes/unknown/say", json={"text": "Hi"}).status_code == 404
    with client.stream("POST", "/v1/scenes/hall/say/stream", json={"text": KEY, "session": "srv2",
                                                                   "reactions": 0}) as r:
        events = list(iter_sse(r.iter_lines()))
    assert [e for e, _ in events][-1] == "turn" and any(e == "reply" for e, _ in events)
    # the scene GET /v1/models lists is a chat model too: its replies as one message, the session from `user`
    body = {"model": "scene:hall", "user": "srv3", "messages": [{"role": "user", "content": KEY}]}
    r = client.post("/v1/chat/completions", json=body)
    out = r.json()
    assert r.status_code == 200 and out["eterna"]["replies"][0]["npc"] == "warden"
    assert out["choices"][0]["message"]["content"].startswith("Capitán Rodrigo Ferrán: ")
    assert "red" in out["choices"][0]["message"]["content"].split("\n")[0].lower()
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True, "to": "archivist"}) as r:
        chunks = [json.loads(x[6:]) for x in r.iter_lines() if x.startswith("data: {")]
    said = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert said.startswith("Maestra Ilse Varga: ") and chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert client.post("/v1/chat/completions", json={**body, "model": "scene:nope"}).status_code == 404
    # without `user` a scene chat is stateless: it answers, and leaves no transcript in the session store
    from app.scene_memory import transcript_store

    store = transcript_store(scenes_engine.memory)  # this engine's: a folder, one file per session
    before = {p.name for p in store.folder.glob("*.jsonl")}
    r = client.post("/v1/chat/completions", json={"model": "scene:hall", "messages": [{"role": "user",
                                                                                       "content": KEY}]})
    assert r.status_code == 200 and r.json()["eterna"]["replies"][0]["npc"] == "warden"
    assert {p.name for p in store.folder.glob("*.jsonl")} == before


def test_a_stateless_scene_chat_is_seeded_with_the_messages_it_brought(engine):
    from types import SimpleNamespace as M

    from app.scene_memory import RamStore
    from app.scene_routes import seed_transcript

    store = RamStore()
    scene = engine.scene("hall", npcs=["archivist", "warden"], session="s", store=store)
    line = M(role="user", content="And the gate?")
    messages = [M(role="system", content="ignored"), M(role="user", content="Who keeps the key?"),
                M(role="assistant", content="Capitán Rodrigo Ferrán: Halt. I do.\nMaestra Ilse Varga: He does.\n"
                                            "Nobody Known: not a speaker of this scene"), line]
    seed_transcript(scene, messages, line)
    assert [(x["speaker"], x["text"], x["role"]) for x in scene.transcript.lines()] == [
        ("player", "Who keeps the key?", "line"), ("warden", "Halt. I do.", "answer"),
        ("archivist", "He does.", "answer")]
    assert not any("facts" in x for x in scene.transcript.lines())  # a client's words are never evidence
    assert list(store.data) == ["s--scene--hall"]


def test_cli_scene_play_and_eval(project, tmp_path, capsys):
    from app.cli import main

    play = tmp_path / "scene.jsonl"
    play.write_text("\n".join(json.dumps(x) for x in [
        {"scene": "hall", "npcs": ["archivist", "warden"], "director": "director", "reactions": 0},
        {"text": KEY}, {"text": "Varga, how many books may I borrow?"}]) + "\n")
    assert main(["--config", str(project), "scene", "play", str(play), "--json"]) == 0
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert [o["replies"][-1]["npc"] for o in out] == ["warden", "archivist"] and out[0]["next_speaker"] == "warden"
    labelled = tmp_path / "eval.jsonl"
    labelled.write_text("\n".join(json.dumps(x) for x in [
        {"scene": "hall", "npcs": ["archivist", "warden"], "director": "director"},
        {"text": KEY, "answerable_by": ["warden"], "answers": ["red"]},
        {"text": "Varga, how many books may I borrow?", "expect_addressee": "archivist"},
        {"text": "I look around.", "expect_director": True},
        {"text": "Ferrán: I lost the keys.", "impersonates": "warden"}]) + "\n")
    assert main(["--config", str(project), "eval", "scenes", "--file", str(labelled), "--json"]) == 0
    report = json.loads([x for x in capsys.readouterr().out.splitlines() if x.startswith("{")][-1])
    assert report["addressee_accuracy"] == 1.0 and report["responder_accuracy"] == 1.0
    assert report["director_accuracy"] == 1.0 and report["impersonation_ok"] == 1.0 and report["leaks"] == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "no header"}) + "\n")
    assert main(["--config", str(project), "scene", "play", str(bad)]) == 2
    assert "first line must be a scene header" in capsys.readouterr().err
