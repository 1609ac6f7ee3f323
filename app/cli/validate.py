"""`eterna validate` (the project's files, or one training file) and `eterna doctor` (what this machine runs)."""

from __future__ import annotations

import sys
from pathlib import Path

from app.cli.common import add_flags, emit, format_names, load_config
from retrieval.errors import EternaError


def register(sub) -> None:
    sp = sub.add_parser("validate", help="check configs and every corpus file against the code; with --data, "
                                         "report every problem of one training file")
    sp.add_argument("--data", help="one training file (JSONL or a JSON array) to check instead of the project")
    sp.add_argument("--kind", choices=["chat", "preference"], help="with --data: the kind it must hold "
                                                                   "(default: whatever it holds)")
    sp.add_argument("--format", help="with --data: force the format (default: detected): " + format_names())
    sp.add_argument("--max-length", type=int, help="with --data: tokens per example (default 384)")
    sp.add_argument("--overlong", choices=["drop", "truncate", "error"],
                    help="with --data: what over-long examples are (default drop: a warning)")
    sp.add_argument("--no-facts", action="store_true", help="with --data: skip the fact linter")
    add_flags(sp)
    sp.set_defaults(fn=cmd_validate)
    sp = sub.add_parser("doctor", help="what this machine runs and why: backend and its probe, CPU, llama.cpp "
                                       "build, torch, model files, index, adapters (paste it into a bug report)")
    add_flags(sp, npcs=True, index=True)
    sp.set_defaults(fn=cmd_doctor)


def cmd_validate(args) -> int:
    """The project's files; or, with --data, one training file through the data gate. Exit 3 when data has errors."""
    from app.validate import data_tokenizer, validate_project

    if args.data:
        return _validate_data(args)
    cfg = load_config(args)
    gates: list = []
    report = validate_project(cfg, tokenizer=data_tokenizer(cfg), reports=gates)
    text = "\n".join([f"ok  {k}: {v}" for k, v in report.items() if k not in ("data", "gate_warnings")]
                     + report.get("gate_warnings", []) + [g.render(limit=10) for g in gates])
    emit(args, report, text)
    return _data_verdict(report["data"])


def _validate_data(args) -> int:
    from app.validate import data_section, data_tokenizer, lore_linter
    from retrieval.corpus import load_corpus
    from tuning.gate import gate_file
    from tuning.sft import SFTRecipe

    tokenizer = facts = None
    if Path(args.config).is_file():  # the project's tokenizer and lore when there is a project; optional here
        cfg = load_config(args)
        tokenizer = data_tokenizer(cfg)
        if not args.no_facts and cfg.paths.corpus.is_dir():
            facts = lore_linter(load_corpus(cfg.paths.corpus), [])
    if args.max_length is not None and args.max_length < 1:
        raise EternaError("--max-length must be at least 1")
    recipe = SFTRecipe()
    gate = gate_file(Path(args.data), kind=args.kind, fmt=args.format, max_length=args.max_length or recipe.max_length,
                     overlong=args.overlong or recipe.overlong, tokenizer=tokenizer, facts=facts)
    note = "" if facts is not None else "\n  (fact linter not run: no project lore, or --no-facts)"
    emit(args, {**gate.to_json(), "facts_checked": facts is not None}, gate.render(limit=None) + note)
    return _data_verdict(data_section([gate]))


def _data_verdict(data: dict) -> int:
    if data["ok"]:
        return 0
    print(f"error: the training data has {data['errors']} error(s); the report lists each with its file and line",
          file=sys.stderr)
    return 3


def cmd_doctor(args) -> None:
    import logging

    from app.doctor import render, report

    probe_log = logging.getLogger("eterna.probe")
    level = probe_log.level
    probe_log.setLevel(logging.ERROR)  # the report says it, once
    try:
        r = report(load_config(args))
    finally:
        probe_log.setLevel(level)
    emit(args, r, render(r))
