"""`eterna scene play FILE.jsonl [--json]` (a scene file played line by line) and `eterna eval scenes --file
SCENES.jsonl [--json]` (app/evaluation/scenes.py)."""

from __future__ import annotations

import json
from pathlib import Path

from app.cli.common import add_backend_flag, add_flags, emit, load_config, make_engine, progress
from retrieval.errors import EternaError


def register(sub) -> None:
    sc = sub.add_parser("scene", help="scenes with several characters").add_subparsers(dest="sub", required=True)
    sp = sc.add_parser("play", help="play a scene file: a header {scene, npcs, director?}, then {text, to?, "
                                    "chapter?, state?} lines")
    sp.add_argument("file", help="scene JSONL")
    sp.add_argument("--session", default="scene", help="the player's session (the transcript is kept under it)")
    sp.add_argument("--reactions", type=int, help="reactions per line (default: the header's, else 1)")
    add_backend_flag(sp)
    add_flags(sp, npcs=True, index=True)
    sp.add_argument("--no-adapters", action="store_true", help="the base model speaks for every character")
    sp.set_defaults(fn=cmd_play)


def register_eval(ev) -> None:
    """`eval scenes`, in `eterna eval`'s group."""
    sp = ev.add_parser("scenes", help="scenes: addressee and responder accuracy, cross-scope leaks, reactions")
    sp.add_argument("--file", required=True, help='scene JSONL with labels (expect_addressee, answerable_by, ...)')
    sp.add_argument("--reactions", type=int, help="reactions per line (default: each header's, else 1)")
    sp.add_argument("--items", action="store_true", help="include every line's replies in the JSON report")
    add_backend_flag(sp)
    add_flags(sp, npcs=True, index=True)
    sp.add_argument("--no-adapters", action="store_true", help="the base model speaks for every character")
    sp.set_defaults(fn=cmd_eval_scenes)


def _check_reactions(n: int | None) -> None:
    if n is not None and n < 0:
        raise EternaError(f"--reactions must be 0 or more, got {n}")


def cmd_play(args) -> int:
    from app.scene_files import load_scenes, play

    _check_reactions(args.reactions)
    scripts = load_scenes(Path(args.file), labels=False)  # a bad file fails before any model loads
    cfg = load_config(args)
    cfg = cfg.model_copy(update={"paths": cfg.paths.model_copy(update={"sessions": None})})  # a clean slate
    engine = make_engine(args, cfg)
    failures = 0
    for script in scripts:
        for n, line, turn in play(engine, script, args.session, args.reactions):
            if isinstance(turn, EternaError):
                failures += 1
                emit(args, {"line": n, "error": f"{args.file}:{n}: {turn}"}, f"error: {args.file}:{n}: {turn}")
                continue
            if args.json:
                print(json.dumps({"replies": [r.to_json() for r in turn.replies],
                                  "next_speaker": turn.next_speaker}, ensure_ascii=False), flush=True)
                continue
            said = [f"{engine.cast.get(r.npc).name} [{r.route}, {r.grounding.get('answer') or 'free'}]: {r.text}"
                    for r in turn.replies]
            print(f"> {line['text']}  ({turn.how}: {turn.responder})\n  " + "\n  ".join(said), flush=True)
    return 3 if failures else 0


def cmd_eval_scenes(args) -> None:
    from app.evaluation.scenes import scenes_report
    from app.scene_files import load_scenes

    _check_reactions(args.reactions)
    scripts = load_scenes(Path(args.file))
    cfg = load_config(args)
    cfg = cfg.model_copy(update={"paths": cfg.paths.model_copy(update={"sessions": None})})
    engine = make_engine(args, cfg)
    r = scenes_report(engine, scripts, reactions=args.reactions, keep_items=args.items, progress=progress("scenes"))
    text = (f"addressee {r['addressee_accuracy']} (n={r['n_addressed']}), director {r['director_accuracy']} "
            f"(n={r['n_director']}), responder {r['responder_accuracy']} (n={r['n_unaddressed_fact']}), answers "
            f"{r['answer_rate']} (n={r['n_answers']}), impersonation {r['impersonation_ok']} "
            f"(n={r['n_impersonations']}), cross-scope leaks {r['leaks']}, reaction rate {r['reaction_rate']} "
            f"(n={r['n_answered']}), relevance {r['reaction_relevance']} (above chance "
            f"{r['reaction_above_chance']}), p50 turn with one reaction {r['p50_turn_one_reaction_ms']} ms "
            f"(n={r['n_turns_one_reaction']}; answer {r['p50_answer_ms']}, reaction {r['p50_reaction_ms']}; "
            f"{r['backend']})")
    emit(args, r, text)
