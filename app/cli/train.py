"""`eterna train <recipe>`: one subcommand per entry of the recipe registry (app/recipes/: sft, dpo, distill, raft).

Each subcommand's recipe flags are generated from its Recipe's typed fields, the way TRL's HfArgumentParser reads a
dataclass: the type, the default and the description (the help); a Literal gives the choices, a bool
`--flag/--no-flag`, a dict a JSON object. `--recipe FILE` reads the same fields from a YAML file, validated (errors
name the file and the field); the flags given override it. The run's own inputs (`--npc`, `--data`, `--out`, ...)
are the recipe module's `options`.
"""

from __future__ import annotations

import argparse
import json
import types
import typing
from pathlib import Path

from app.cli.common import add_flags, emit, load_config
from retrieval.errors import EternaError


def register(sub) -> None:
    from app.recipes import recipes

    train = sub.add_parser("train", help="fine-tune adapters").add_subparsers(dest="sub", required=True)
    for entry in recipes().values():
        sp = train.add_parser(entry.name, help=entry.help)
        if entry.options is not None:
            entry.options(sp)
        add_recipe_flags(sp, entry)
        add_flags(sp, npcs=True)
        sp.set_defaults(fn=lambda args, entry=entry: run(entry, args))


def _flags(entry, name: str) -> tuple[str, ...]:
    return entry.flags.get(name, ("--" + name.replace("_", "-"),))


def _dest(name: str) -> str:
    return f"recipe.{name}"


def _kind(annotation):
    """The one type a flag parses: `X | None` is X."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def add_recipe_flags(sp, entry) -> None:
    group = sp.add_argument_group(f"recipe (the fields of {entry.config.__name__})")
    group.add_argument("--recipe", metavar="FILE", help="a YAML mapping of these fields (e.g. configs/recipes/); "
                                                        "the flags given override it")
    for name, field in entry.config.model_fields.items():
        default = field.get_default(call_default_factory=True)
        text = (field.description or "").replace("%", "%%")
        kw = {"dest": _dest(name), "default": argparse.SUPPRESS, "metavar": name.upper(),
              "help": f"{text} (default: {default if isinstance(default, str) else json.dumps(default)})".lstrip()}
        kind = _kind(field.annotation)
        if typing.get_origin(kind) is typing.Literal:
            kw["choices"] = list(typing.get_args(kind))
            kw["metavar"] = None
        elif kind is bool:
            kw.update(action=argparse.BooleanOptionalAction, metavar=None)
        elif kind in (int, float, str):
            kw["type"] = kind
        elif kind is dict or typing.get_origin(kind) is dict:
            kw["metavar"] = "JSON"  # parsed in recipe_from_args, so a bad one is a one-line error
        else:
            raise TypeError(f"{entry.config.__name__}.{name}: no flag for a {kind!r} field")
        group.add_argument(*_flags(entry, name), **kw)


def recipe_from_args(entry, args):
    """The recipe: the --recipe file's fields (when given), then the fields whose flags were given; validated, an
    invalid field named by its flag (or by the file and the field)."""
    from pydantic import ValidationError

    from tuning.recipes import check_method, load_recipe

    given = {}
    for name, field in entry.config.model_fields.items():
        if not hasattr(args, _dest(name)):
            continue
        value = getattr(args, _dest(name))
        if _kind(field.annotation) is dict:
            flag = _flags(entry, name)[0]
            try:
                value = json.loads(value)
            except json.JSONDecodeError as e:
                raise EternaError(f"{flag}: invalid JSON ({e.msg}); e.g. {flag} '{{\"r\": 16}}'") from None
            if not isinstance(value, dict):
                raise EternaError(f"{flag} must be a JSON object, e.g. '{{\"num_virtual_tokens\": 16}}'")
        given[name] = value
    for name, value in (entry.extra(args) if entry.extra is not None else {}).items():
        given[name] = {**given.get(name, {}), **value} if isinstance(value, dict) else value
    if args.recipe:
        return load_recipe(Path(args.recipe), entry.config, given)
    try:
        recipe = entry.config(**given)
    except ValidationError as e:
        first = e.errors()[0]
        where = _flags(entry, str(first["loc"][0]))[-1] if first["loc"] else entry.config.__name__
        raise EternaError(f"{where}: {first['msg']}") from None
    check_method(recipe)  # fail before loading anything
    return recipe


def run(entry, args) -> None:
    recipe = recipe_from_args(entry, args)
    result, text = entry.train(load_config(args), args, recipe)
    emit(args, result, text)
