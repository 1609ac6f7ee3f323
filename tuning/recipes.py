"""Recipe files: a YAML mapping of a recipe's fields (configs/recipes/*.yaml), validated into its typed class.

    recipe = load_recipe("configs/recipes/npc-1b-lora.yaml")               # an SFTRecipe
    recipe = load_recipe(path, DPORecipe, overrides={"max_steps": 10})     # command-line flags win

Unknown fields, wrong types and out-of-range values are ConfigErrors naming the file and the field; in recipes that
name a fine-tuning method, its own parameters (`params`) are checked by the method's typed config (`check_method`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ValidationError

from retrieval.errors import ConfigError, yaml_error_message


def check_method(recipe: BaseModel) -> None:
    """A recipe naming a fine-tuning method: the method exists and its `params` parse (a ConfigError names them)."""
    if {"method", "params"} <= set(type(recipe).model_fields):
        from tuning.methods import get_method

        get_method(recipe.method).parse(recipe.params)


def load_recipe(path: Path, cls: type[BaseModel] | None = None, overrides: dict | None = None) -> BaseModel:
    import yaml

    if cls is None:
        from tuning.sft import SFTRecipe as cls
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: recipe file not found; see configs/recipes/ for examples")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(yaml_error_message(path, e)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of fields ({', '.join(cls.model_fields)})")
    merged = {**data, **(overrides or {})}
    if "params" in data and "params" in (overrides or {}):
        merged["params"] = {**data["params"], **overrides["params"]}
    try:
        recipe = cls.model_validate(merged)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(map(str, first["loc"]))
        raise ConfigError(f"{path}: {field}: {first['msg']} (fields: {', '.join(cls.model_fields)})") from None
    try:
        check_method(recipe)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return recipe
