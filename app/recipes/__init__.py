"""The training recipes `eterna train` offers: a registry of (name, Recipe class, train function), one module of this
package per recipe (sft, dpo, distill, raft), each registering itself.

    from app.recipes import recipes
    entry = recipes().lookup("dpo")     # entry.config: DPORecipe; entry.train(cfg, args, recipe) -> (result, text)

`eterna train` (app/cli/train.py) iterates the registry: each entry's flags are generated from its Recipe's typed
fields, and `--recipe FILE` (a YAML of the same fields) works for every entry. A new recipe is one module here (its
Recipe class, its train function, the run's own inputs such as `--npc`) plus its test.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel

from retrieval.registry import Registry


@dataclass(frozen=True)
class RecipeEntry:
    name: str
    config: type[BaseModel]  # the recipe's fields: its flags, and what a --recipe FILE holds
    train: Callable  # train(cfg, args, recipe) -> (the result printed by --json, the one-line text)
    help: str
    options: Callable | None = None  # options(parser): the run's own inputs (which character, data, output)
    flags: dict[str, tuple[str, ...]] = field(default_factory=dict)  # a field's flags when not --field-name
    extra: Callable | None = None  # extra(args) -> recipe fields set by run options (sft's --rank: params.r)


RECIPES: Registry[RecipeEntry] = Registry("recipe")


def register(name: str, config: type[BaseModel], train: Callable, help: str, **kw) -> RecipeEntry:
    return RECIPES.add(name, RecipeEntry(name, config, train, help, **kw))


def recipes() -> Registry[RecipeEntry]:
    """The registry, every module of this package imported (each registers its recipe)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return RECIPES


def checkpoint_options(sp) -> None:
    """The run options of recipes that checkpoint (their `save_steps` field is a flag of its own)."""
    sp.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint of an "
                                                          "interrupted run of the same data and recipe")
    sp.add_argument("--keep-checkpoints", action="store_true", help="keep <out>.checkpoints/ after publishing "
                                                                    "(default: removed)")
