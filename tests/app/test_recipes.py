"""The recipe registry behind `eterna train`: every registered recipe is a subcommand whose flags are its Recipe's
fields, the flags of before still parse, `--recipe FILE` works for every recipe, and a new recipe is one entry."""

import json

import pytest
from pydantic import BaseModel, ConfigDict, Field

from app.cli import build_parser, main
from app.cli.train import recipe_from_args
from app.recipes import RECIPES, RecipeEntry, recipes
from retrieval.errors import ConfigError, EternaError
from tests.conftest import write_project

# every flag `eterna train NAME` took before the registry (kept: scripts and docs use them)
OLD_FLAGS = {
    "sft": ["--npc", "--data", "--out", "--max-steps", "--epochs", "--rank", "--method", "--params", "--lr",
            "--max-length", "--overlong", "--format", "--skip-bad-rows", "--recipe", "--save-steps", "--resume",
            "--keep-checkpoints", "--json", "--npcs"],
    "dpo": ["--npc", "--data", "--out", "--from-adapter", "--from-base", "--method", "--max-steps", "--epochs",
            "--beta", "--lr", "--held-out", "--save-steps", "--resume", "--keep-checkpoints", "--json", "--npcs"],
    "distill": ["--npc", "--out", "--layers", "--intermediate", "--init", "--temperature", "--dialogues",
                "--max-new-tokens", "--teacher-temperature", "--chapter", "--max-steps", "--epochs", "--lr",
                "--json", "--npcs"],
    "raft": ["--npc", "--all", "--chapter", "--examples", "--seed", "--out", "--max-steps", "--epochs", "--json",
             "--npcs", "--index"],
    "persona": ["--worlds", "--dialogues", "--out", "--data-out", "--dialogue-turns", "--card-share", "--max-steps",
                "--lr", "--save-steps", "--resume", "--keep-checkpoints", "--json"],
    "reader": ["--worlds", "--facts", "--out", "--epochs", "--lr", "--seed", "--titles", "--json"],
}


def _sub(name):
    parser = build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices["train"]._actions
                 if a.dest == "sub")
    return train.choices[name]


def _parse(*argv):
    return build_parser().parse_args(["train", *argv])


def test_the_train_group_is_the_registry_and_keeps_every_old_flag():
    assert set(recipes()) == set(OLD_FLAGS)
    for name, old in OLD_FLAGS.items():
        sp = _sub(name)
        flags = {s for a in sp._actions for s in a.option_strings}
        assert set(old) <= flags, (name, set(old) - flags)
        entry = RECIPES[name]
        for field in entry.config.model_fields:  # every field of the recipe is a flag
            assert any(a.dest == f"recipe.{field}" for a in sp._actions), (name, field)


def test_flags_carry_type_default_help_choices_and_bools():
    sp = _sub("sft")
    by_flag = {s: a for a in sp._actions for s in a.option_strings}
    assert by_flag["--overlong"].choices == ["drop", "truncate", "error"]
    assert by_flag["--max-length"].type is int and "(default: 384)" in by_flag["--max-length"].help
    assert "tokens per example" in by_flag["--max-length"].help  # the field's description
    assert by_flag["--lr"] is by_flag["--learning-rate"]
    args = _parse("sft", "--npc", "w", "--no-bf16", "--lr", "0.02", "--max-steps", "3")
    recipe = recipe_from_args(RECIPES["sft"], args)
    assert recipe.bf16 is False and recipe.learning_rate == 0.02 and recipe.max_steps == 3
    assert recipe.model_fields_set == {"bf16", "learning_rate", "max_steps"}  # only the flags given
    with pytest.raises(SystemExit):
        _parse("sft", "--npc", "w", "--overlong", "chop")
    # sft's --rank is the method's params.r, merged with --params
    args = _parse("sft", "--npc", "w", "--params", '{"alpha": 8}', "--rank", "4")
    assert recipe_from_args(RECIPES["sft"], args).params == {"alpha": 8, "r": 4}
    with pytest.raises(EternaError, match="--params: invalid JSON"):
        recipe_from_args(RECIPES["sft"], _parse("sft", "--npc", "w", "--params", "{r: 4"))
    with pytest.raises(EternaError, match="^--learning-rate: Input should be greater than 0"):
        recipe_from_args(RECIPES["dpo"], _parse("dpo", "--npc", "w", "--lr", "-1"))
    # raft: --seed seeds the items; the SFT part's own seed is --train-seed
    r = recipe_from_args(RECIPES["raft"], _parse("raft", "--all", "--seed", "7", "--examples", "16"))
    assert (r.item_seed, r.seed, r.examples, r.epochs, r.max_length) == (7, 0, 16, 1.0, 512)
    assert "examples" not in r.sft().model_dump() and r.sft().max_length == 512


@pytest.mark.parametrize("name,yaml,flags,want", [
    ("dpo", "beta: 0.3\nmax_steps: 5\nloss_type: ipo\n", ["--npc", "w", "--max-steps", "2"],
     {"beta": 0.3, "max_steps": 2, "loss_type": "ipo"}),
    ("distill", "layers: 2\ntemperature: 3.0\n", ["--npc", "w", "--layers", "1"], {"layers": 1, "temperature": 3.0}),
    ("raft", "examples: 40\nlearning_rate: 0.01\n", ["--all", "--lr", "0.02"],
     {"examples": 40, "learning_rate": 0.02}),
    ("sft", "method: lora\nparams: {r: 4, alpha: 8}\n", ["--npc", "w", "--rank", "2"],
     {"params": {"r": 2, "alpha": 8}}),
])
def test_recipe_file_works_for_every_recipe_and_flags_override_it(tmp_path, name, yaml, flags, want):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml)
    recipe = recipe_from_args(RECIPES[name], _parse(name, *flags, "--recipe", str(path)))
    assert isinstance(recipe, RECIPES[name].config)
    assert {k: getattr(recipe, k) for k in want} == want


def test_bad_recipe_files_name_the_file_and_the_field(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text("beta: -1\n")
    with pytest.raises(ConfigError, match=f"{path}: beta: Input should be greater than 0"):
        recipe_from_args(RECIPES["dpo"], _parse("dpo", "--npc", "w", "--recipe", str(path)))
    path.write_text("layres: 2\n")
    with pytest.raises(ConfigError, match=f"{path}: layres: Extra inputs are not permitted"):
        recipe_from_args(RECIPES["distill"], _parse("distill", "--npc", "w", "--recipe", str(path)))
    path.write_text("params: {r: 0}\n")
    with pytest.raises(ConfigError, match=f"{path}: method 'lora': params.r"):
        recipe_from_args(RECIPES["sft"], _parse("sft", "--npc", "w", "--recipe", str(path)))


class ToyRecipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(2, ge=1, description="how many rounds")
    style: str = Field("plain", description="the style")


def test_a_new_recipe_is_one_registry_entry(capsys, tmp_path, tiny_llm_dir):
    """Registered, it is `eterna train toy` with its flags and --recipe, run by the group's one handler."""
    cfg = str(write_project(tmp_path / "proj", str(tiny_llm_dir)))
    seen = []

    def train(config, args, recipe):
        seen.append(recipe)
        return {"rounds": recipe.rounds, "style": recipe.style}, f"{recipe.rounds} rounds"

    RECIPES.add("toy", RecipeEntry("toy", ToyRecipe, train, "a toy recipe"))
    try:
        path = tmp_path / "toy.yaml"
        path.write_text("rounds: 5\nstyle: bold\n")
        assert main(["--config", cfg, "train", "toy", "--recipe", str(path), "--rounds", "3", "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == {"rounds": 3, "style": "bold"}
        assert main(["--config", cfg, "train", "toy", "--rounds", "0"]) == 2
        assert "error: --rounds: Input should be greater than or equal to 1" in capsys.readouterr().err
        assert len(seen) == 1
    finally:
        del RECIPES["toy"]
