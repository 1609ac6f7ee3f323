"""Best-of-n for free replies (app/bestof.py): the scorer on hand-made replies (each feature must be able to lose),
and n candidates through the tiny real model: the first is the configured reply, the chosen is the best scored,
nothing streams before the choice, and the config refuses what cannot run."""

import pytest
import yaml

from app.bestof import BestOfConfig, ScoreContext, quality_score
from app.config import EternaConfig
from retrieval.errors import ConfigError
from retrieval.rebuild import rebuild_index
from tests.conftest import tiny_engine, write_project

CTX = ScoreContext(name="Maren Holt", phrases=["Move along, reader.", "Halt."], other_names=["Brother Anselmo"],
                   allowed="Maren Holt keeps the west gate of the town. The bell rings at dusk.")


def score(text):
    return quality_score(text, CTX)[0]


def test_a_looping_reply_loses_to_the_same_reply_said_once():
    once = "Halt. The gate shuts at dusk. Move along, reader."
    looping = "Halt. The gate shuts at dusk. The gate shuts at dusk. Move along, reader."
    assert quality_score(looping, CTX)[1]["loop"] == 1.0
    assert score(once) > score(looping)


def test_the_characters_phrase_wins_over_a_plain_reply():
    assert score("Halt. The bell rings at dusk.") > score("The bell rings at dusk.")


def test_invented_names_numbers_and_broken_character_lose():
    plain = "The bell rings at dusk, stranger."
    assert score(plain) > score("The bell rings at dusk in Brinehollow, stranger.")  # an invented place
    assert score(plain) > score("The bell rings 40 times at dusk, stranger.")  # an invented number
    assert score(plain) > score("As an AI language model, I think the bell rings at dusk.")
    assert score(plain) > score("My name is Brother Anselmo and the bell rings at dusk.")


def test_rambling_and_markup_lose():
    short = "The bell rings at dusk, and the gate shuts after it."
    ramble = " ".join(["The bell rings at dusk, and the gate shuts after it, and the street goes quiet."] * 1
                      + [f"Then comes hour {w} of the night watch and its quiet." for w in
                         ("one", "two", "three", "four")])
    assert quality_score(ramble, CTX)[1]["length"] > 0
    assert score(short) > score(ramble)
    assert score(short) > score("- **The bell** rings at dusk, and the gate shuts after it.")


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_llm_dir, embedder):
    return tiny_engine(tmp_path_factory.mktemp("bestof") / "proj", str(tiny_llm_dir), embedder)


def _best_of(engine, **kw):
    gen = engine.config.generation
    return engine.variant(config=engine.config.model_copy(update={"generation": gen.model_copy(
        update={"best_of": BestOfConfig(**kw), "max_new_tokens": 12})}))


def test_n_candidates_the_first_is_the_configured_reply_and_the_best_is_chosen(engine):
    plain = _best_of(engine, n=1).say("warden", "Tell me a story about the rain.", route="style", remember=False)
    three = _best_of(engine, n=3).say("warden", "Tell me a story about the rain.", route="style", remember=False)
    assert "best_of" not in plain.context
    report = three.context["best_of"]
    cands = report["candidates"]
    assert len(cands) == 3 and three.tokens["best_of"] == 3
    assert cands[0]["text"] == plain.text  # candidate 1 decodes as n = 1 does (greedy here)
    best = max(c["score"] for c in cands)
    assert cands[report["chosen"]]["score"] == best
    assert report["chosen"] == min(i for i, c in enumerate(cands) if c["score"] == best)  # ties: the earliest
    assert three.text == cands[report["chosen"]]["text"]
    assert len({c["text"] for c in cands}) > 1  # the others are sampled, not copies of the first


def test_a_best_of_turn_streams_the_chosen_text_once_whole(engine):
    items = list(_best_of(engine, n=2).stream("warden", "Sing me something.", route="style", remember=False))
    pieces, final = items[:-1], items[-1]
    assert pieces == [final.text]


def test_fact_turns_are_not_decoded_best_of(engine):
    r = _best_of(engine, n=3).say("archivist", "How many books can a reader borrow at once?", route="fact",
                                  remember=False)
    assert "best_of" not in r.context


def test_config_refuses_more_candidates_than_a_batch_and_unknown_weights(tmp_path):
    def load(extra):
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(extra), encoding="utf-8")
        return EternaConfig.load(path)

    with pytest.raises(ConfigError, match=r"generation.best_of.n \(9\).*models.batched.max_batch \(8\)"):
        load({"models": {"backend": "batched"}, "generation": {"best_of": {"n": 9}}})
    assert load({"models": {"backend": "llamacpp"}, "generation": {"best_of": {"n": 9}}}).generation.best_of.n == 9
    with pytest.raises(ConfigError, match="unknown weight 'charm'"):
        load({"generation": {"best_of": {"weights": {"charm": 1}}}})
    with pytest.raises(ConfigError, match="unknown best-of scorer 'vibes'"):
        load({"generation": {"best_of": {"scorer": "vibes"}}})


def test_self_pairs_reject_the_models_own_failing_candidates(engine):
    from app.selfpairs import failures, self_pairs

    examples = [[{"role": "user", "content": p}, {"role": "assistant", "content": f"Halt. {p} Move along, reader."}]
                for p in ("Tell me about the rain.", "Sing me something.", "What do you do all day?")]
    rows, report = self_pairs(engine, "warden", examples, n=3)
    assert report["prompts"] == 3 and report["candidates"] == 9
    assert report["pairs"] == len(rows) > 0  # the tiny model's 12-token babble fails something every time
    prompts = {e[0]["content"]: e[1]["content"] for e in examples}
    for r in rows:
        assert r["prompt"] in prompts and r["why"] and r["chosen"] != r["rejected"]
    assert {r["chosen"] for r in rows} & set(prompts.values())  # the style set's replies are chosen
    # the rule itself: a candidate that fails nothing never becomes a rejected reply
    good = {"score": 1.0, "features": {"voice": 1.0, "loop": 0.0, "length": 0.0, "invented": 0.0, "breaks": 0.0,
                                       "unclean": 0.0}}
    assert failures(good, True) == [] and failures({**good, "features": {**good["features"], "voice": 0.0}},
                                                   True) == ["no_voice"]
    assert failures({**good, "features": {**good["features"], "loop": 1.0}}, False) == ["loop"]


def test_train_dpo_self_pairs_cli_writes_pairs_with_a_manifest_then_trains(tmp_path, tiny_llm_dir, embedder,
                                                                         style_file, capsys):
    import json

    from app.cli import main

    cfg = write_project(tmp_path / "proj", str(tiny_llm_dir))
    rebuild_index(tmp_path / "proj" / "lore", tmp_path / "proj" / "index", embedder)
    rc = main(["--config", str(cfg), "train", "dpo", "--npc", "warden", "--self-pairs", "--data", str(style_file),
               "--candidates", "2", "--from-base", "--max-steps", "1", "--out", str(tmp_path / "out"), "--json"])
    out = capsys.readouterr()[0]
    assert rc == 0, out
    pairs = tmp_path / "out.self-pairs.jsonl"
    manifest = json.loads((tmp_path / "out.self-pairs.jsonl.manifest.json").read_text())
    rows = [json.loads(x) for x in pairs.read_text().splitlines()]
    assert rows and manifest["kind"] == "self-pairs" and manifest["pairs"] == len(rows) and manifest["n"] == 2
    assert (tmp_path / "out" / "adapter_config.json").is_file()
    assert main(["--config", str(cfg), "train", "dpo", "--npc", "warden", "--self-pairs", "--candidates", "1",
                 "--data", str(style_file), "--out", str(tmp_path / "o2")]) == 2
