"""The `eterna` command line. Thin: parse flags, build typed configs, call the framework, print text or JSON.

Each command group is a module holding its `register(subparsers)` and its handlers side by side: models, index,
play (say, chat, demo), scene (play), serve, adapters, train, evaluate (`eval`), validate (validate, doctor); what
they share is in common.py.

Exit codes: 0 success, 2 bad input or config (a one-line `error: ...` on stderr), 3 a batch ran but some lines
failed (each has its own error object) or `validate` found errors in training data (the report lists them),
1 unexpected failure.
"""

from __future__ import annotations

import argparse
import json
import sys

from app.cli import adapters, evaluate, index, models, play, scene, serve, train, validate
from app.cli.common import DEFAULT_CONFIG, quiet_libraries
from retrieval.errors import EternaError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eterna", description="Eterna: NPC dialogue with RAG for facts and "
                                                            "fine-tuned adapters for form.")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="main config (default: configs/eterna.yaml)")
    sub = p.add_subparsers(dest="command", required=True)
    # the order of `eterna --help`
    for register in (models.register, index.register, play.register, scene.register, serve.register,
                     play.register_demo,
                     adapters.register, train.register, evaluate.register, validate.register):
        register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
    try:
        rc = args.fn(args)
        return int(rc or 0)
    except EternaError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if getattr(args, "json", False):
            print(json.dumps({"error": msg, "type": type(e).__name__}), flush=True)
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
