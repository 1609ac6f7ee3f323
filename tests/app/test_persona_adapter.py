"""The persona-following adapter: `eterna train persona` builds its rows (style sets with their cast's system
prompts, PersonaChat exchanges, style cards) and trains it; `models.persona_adapter` serves it for every character
without an adapter of its own, and never for one with its own."""

import json
import random

import pytest
import yaml

from app.assemble import PERSONA_ADAPTER
from app.cli import main
from app.config import Cast, EternaConfig
from app.dialogue import DialogueEngine
from app.evaluation.quality import signature_hits, signature_phrases
from app.prompt import system_prompt
from app.recipes.persona import CARDS, speaker_prompt
from retrieval.errors import ConfigError, CorpusError
from retrieval.rebuild import rebuild_index
from tests.conftest import write_project
from tests.fixtures_data import STYLE
from tuning.persona import PersonaRecipe, card_style, carded, persona_rows, read_personachat, tidy
from tuning.sft import SFTRecipe, train_sft

DIALOGUES = """1 your persona: i have two dogs.
2 your persona: i like to fix old bikes.
3 hi ! how are you doing tonight ?\ti'm doing great . just walking my two dogs .
4 cool . do you work ?\ti fix bikes , it's fun . don ' t you love bikes ?
1 your persona: i am a baker.
2 good morning !\tmorning ! i just baked bread , i'm tired .
"""


def test_tidy_reads_personachat_as_prose():
    assert tidy("i'm doing great . just relaxing with my two dogs .") == \
        "I'm doing great. Just relaxing with my two dogs."
    assert tidy("don ' t you love it ? i ' ve two") == "Don't you love it? I've two"


def test_read_personachat_groups_dialogues_and_names_a_bad_line(tmp_path):
    path = tmp_path / "pc.txt"
    path.write_text(DIALOGUES, encoding="utf-8")
    dialogues = read_personachat(path)
    assert [len(p) for p, _ in dialogues] == [2, 1] and [len(t) for _, t in dialogues] == [2, 1]
    assert dialogues[0][1][0] == ("Hi! How are you doing tonight?", "I'm doing great. Just walking my two dogs.")
    path.write_text(DIALOGUES + "a stray line\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"pc.txt:7: neither"):
        read_personachat(path)
    with pytest.raises(CorpusError, match="not found"):
        read_personachat(tmp_path / "missing.txt")


def test_a_card_names_its_phrases_and_the_reply_carries_them():
    cards = yaml.safe_load(CARDS.read_text(encoding="utf-8"))
    rng = random.Random(3)
    for _ in range(30):
        style, opener, closer, address = card_style(cards, rng)
        reply = carded("I fix bikes. It is fun.", opener, closer, address)
        named = signature_phrases(style)  # what the quality metric will look for in the style text
        assert {p for p in (opener, closer, address) if p} <= set(named), (style, named)
        assert signature_hits(reply, named) == len(named), (reply, named)
        assert reply.startswith(opener) and reply.endswith(closer or "fun.")
    assert carded("No.", "", "", "friend") == "No, friend."


def test_persona_rows_mix_the_sources_each_with_its_system_turn(tmp_path):
    path = tmp_path / "pc.txt"
    path.write_text(DIALOGUES, encoding="utf-8")
    cards = yaml.safe_load(CARDS.read_text(encoding="utf-8"))
    styled = [("You are the guard.", x["messages"]) for x in STYLE]
    from app.config import PromptsConfig

    recipe = PersonaRecipe(dialogue_turns=3, card_share=1.0)
    rows, counts = persona_rows(styled, read_personachat(path), cards, recipe, speaker_prompt(PromptsConfig()))
    assert counts == {"styled": len(STYLE), "dialogue": 0, "cards": 3} and len(rows) == len(STYLE) + 3
    assert all(r[0]["role"] == "system" and r[-1]["role"] == "assistant" for r in rows)
    card_rows = [r for r in rows if r[0]["content"] != "You are the guard."]
    for r in card_rows:  # the card's phrases are in its style text and in the reply
        assert "Speaking style:" in r[0]["content"] and "in the game world" in r[0]["content"]
        assert PromptsConfig().style.split(".")[0] in r[0]["content"]  # the small-talk turn's own instructions
        assert signature_hits(r[-1]["content"], signature_phrases(r[0]["content"].split("Speaking style:")[1])) > 0
    again, _ = persona_rows(styled, read_personachat(path), cards, recipe, speaker_prompt(PromptsConfig()))
    assert again == rows  # seeded: --resume finds the same data


@pytest.fixture(scope="module")
def persona_project(tmp_path_factory, tiny_llm_dir, embedder):
    """The tiny world: the warden with its own adapter, a style folder, PersonaChat, and a persona adapter trained
    by `eterna train persona`."""
    root = tmp_path_factory.mktemp("persona")
    path = write_project(root / "proj", str(tiny_llm_dir))
    raw = yaml.safe_load(path.read_text())
    raw["paths"]["style"] = "style"
    path.write_text(yaml.safe_dump(raw))
    cfg = EternaConfig.load(path)
    rebuild_index(cfg.paths.corpus, cfg.paths.index, embedder)
    cfg.paths.style.mkdir()
    (cfg.paths.style / "warden.jsonl").write_text("".join(json.dumps(x) + "\n" for x in STYLE), encoding="utf-8")
    warden = Cast.load(cfg.paths.npcs).get("warden")
    own = root / "adapters" / "warden"
    train_sft(tiny_llm_dir, cfg.paths.style / "warden.jsonl", own, SFTRecipe(max_steps=1, batch_size=4),
              system=system_prompt(warden, cfg.world, cfg.prompts), npc="warden")
    cfg.paths.npcs.write_text(cfg.paths.npcs.read_text().replace(
        "knows: [room, rule, character]\n    adapter: null", f"knows: [room, rule, character]\n    adapter: {own}"))
    dialogues = root / "pc.txt"
    dialogues.write_text(DIALOGUES, encoding="utf-8")
    out = root / "adapters" / "persona"
    assert main(["--config", str(path), "train", "persona", "--dialogues", str(dialogues), "--out", str(out),
                 "--data-out", str(root / "rows.jsonl"), "--dialogue-turns", "3", "--max-steps", "2",
                 "--batch-size", "4", "--save-steps", "0", "--json"]) == 0
    return path, out, root


def test_train_persona_writes_a_float16_adapter_with_its_manifest(persona_project):
    _, out, root = persona_project
    manifest = json.loads((out / "eterna_adapter.json").read_text())
    assert manifest["built_by"] == "eterna train persona" and manifest["npc"] is None
    assert manifest["persona"]["rows"]["styled"] == len(STYLE)  # the warden's style set, with its system prompt
    assert sum(manifest["persona"]["rows"].values()) == manifest["data"]["examples"] == len(STYLE) + 3
    assert manifest["recipe"]["save_dtype"] == "float16" and manifest["metrics"]["steps"] == 2
    rows = [json.loads(x)["messages"] for x in (root / "rows.jsonl").read_text().splitlines()]
    assert sum("Capitán Rodrigo Ferrán" in r[0]["content"] for r in rows) == len(STYLE)


def test_the_persona_adapter_speaks_for_characters_without_their_own(persona_project):
    path, out, _ = persona_project
    cfg = EternaConfig.load(path)
    served = cfg.model_copy(update={"models": cfg.models.model_copy(update={"persona_adapter": out})})
    engine = DialogueEngine.from_settings(served)
    assert engine.adapter_names == {"warden": "warden", "director": PERSONA_ADAPTER, "archivist": PERSONA_ADAPTER}
    assert engine.generator.adapters[PERSONA_ADAPTER] == out
    reply = engine.say("archivist", "Hello!", session="p", route="style")
    assert reply.tokens["reply"] >= 1 and reply.adapter == PERSONA_ADAPTER
    assert engine.say("warden", "Hello!", session="p", route="style").adapter == "warden"  # its own wins
    assert engine.say("archivist", "Hello!", session="q", route="style", use_adapter=False).adapter is None
    bare = DialogueEngine.from_settings(served, adapters=False)
    assert bare.adapter_names == {} and bare.generator.adapters == {}
    plain = DialogueEngine.from_settings(cfg)  # unset: the base model speaks for them, as before
    assert plain.adapter_names == {"warden": "warden"}


def test_a_bad_persona_adapter_path_is_a_config_error_naming_the_field(persona_project, tmp_path):
    path, out, _ = persona_project
    raw = yaml.safe_load(path.read_text())
    for bad, why in ((tmp_path / "nowhere", "not found"), (tmp_path, "not an adapter folder")):
        raw["models"]["persona_adapter"] = str(bad)
        cfg_path = path.parent / "bad.yaml"
        cfg_path.write_text(yaml.safe_dump(raw))
        with pytest.raises(ConfigError, match=f"bad.yaml: models.persona_adapter: .*{why}.*eterna train persona"):
            EternaConfig.load(cfg_path)
    raw["models"]["persona_adapter"] = str(out)
    cfg_path.write_text(yaml.safe_dump(raw))
    assert EternaConfig.load(cfg_path).models.persona_adapter == out


def test_validate_names_whom_the_persona_adapter_speaks_for_and_its_strength(persona_project, tmp_path):
    from app.validate import validate_project
    from tuning.adapters import scale_adapter

    path, out, _ = persona_project
    cfg = EternaConfig.load(path)
    assert "persona_adapter" not in validate_project(cfg)
    half = tmp_path / "half"
    scale_adapter(out, half, 0.5)
    served = cfg.model_copy(update={"models": cfg.models.model_copy(update={"persona_adapter": half})})
    said = validate_project(served)["persona_adapter"]
    assert "strength 0.5" in said and "director, archivist" in said and "warden" not in said


def test_an_ab_variant_names_its_persona_adapter_and_one_without_adapters_has_none(persona_project, tmp_path):
    from app.evaluation.ab import EvalConfig, _engines

    path, out, _ = persona_project
    spec = tmp_path / "ab.yaml"
    spec.write_text(yaml.safe_dump({"world": str(path), "only": ["style"], "variants": [
        {"name": "after", "persona_adapter": str(out)}, {"name": "before", "adapters": False}]}))
    engines = _engines(EvalConfig.load(spec), EternaConfig.load(path))
    served = EternaConfig.load(path)  # a world that serves it: a variant without adapters still speaks without it
    served = served.model_copy(update={"models": served.models.model_copy(update={"persona_adapter": out})})
    assert _engines(EvalConfig.load(spec), served)["before"].adapter_names == {}
    assert engines["before"].adapter_names == {}
    assert engines["after"].adapter_names["archivist"] == PERSONA_ADAPTER
    assert engines["after"].say("archivist", "Hello!", session="ab", route="style").adapter == PERSONA_ADAPTER
    assert engines["before"].say("archivist", "Hello!", session="ab2", route="style").adapter is None


def test_a_fact_reply_framed_by_the_adapter_says_its_lead_in_only_when_it_passes(persona_project):
    """grounding.frame: adapter: the character's adapter writes a lead-in for an extracted fact; it is checked, and
    the fact is said either way; a character with no adapter keeps its markers alone."""
    path, _, _ = persona_project
    cfg = EternaConfig.load(path)
    engine = DialogueEngine.from_settings(cfg)
    q = "Who built the great clock?"
    plain = engine.say("warden", q, session="f0", route="fact", remember=False)
    engine.config = cfg.model_copy(update={"grounding": cfg.grounding.model_copy(update={"frame": "adapter"})})
    framed = engine.say("warden", q, session="f1", route="fact", remember=False)
    frame = framed.grounding["frame"]
    assert plain.grounding["answer"] == framed.grounding["answer"] == "extracted" and "frame" not in plain.grounding
    assert isinstance(frame["text"], str) and ("fault" in frame) is not frame["said"]
    if frame["said"]:  # the lead-in, then the same fact in the same markers
        assert framed.text.replace(frame["text"] + " ", "", 1) == plain.text
    else:
        assert framed.text == plain.text and frame["fault"]
    other = engine.say("archivist", q, session="f2", route="fact", remember=False)
    assert "frame" not in other.grounding  # no adapter of its own, none shared: markers alone
