"""Talking to the cast: `eterna say` (one reply, or a batch), `eterna chat` (interactive), `eterna demo` (a scene)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from app.cli.common import add_backend_flag, add_flags, emit, load_config, make_engine
from retrieval.errors import EternaError
from retrieval.gates import State


def _no_adapters_flag(sp) -> None:
    sp.add_argument("--no-adapters", action="store_true",
                    help="load none of the cast's adapters: the base model speaks for everyone")


def _state_flag(sp) -> None:
    sp.add_argument("--state", type=_json_state, default=None, metavar="JSON",
                    help='the game state, a JSON object such as \'{"quest": {"done": true}}\' (lore `requires`)')


def _json_state(text: str) -> dict:
    import argparse

    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"--state is not JSON ({e.msg} at column {e.colno})") from None


def register(sub) -> None:
    sp = sub.add_parser("say", help="one NPC reply (or a batch with --file)")
    add_backend_flag(sp)
    sp.add_argument("text", nargs="?")
    sp.add_argument("--npc")
    sp.add_argument("--file", help="JSONL lines {npc, text, chapter, session, state}; one reply per line")
    sp.add_argument("--chapter", type=int, default=1)
    sp.add_argument("--session", default="default")
    _state_flag(sp)
    add_flags(sp, npcs=True, index=True)
    _no_adapters_flag(sp)
    sp.set_defaults(fn=cmd_say)

    sp = sub.add_parser("chat", help="talk to one NPC interactively")
    add_backend_flag(sp)
    sp.add_argument("--npc", required=True)
    sp.add_argument("--chapter", type=int, default=1)
    sp.add_argument("--session", default="chat")
    _state_flag(sp)
    add_flags(sp, json_flag=False, npcs=True, index=True)
    _no_adapters_flag(sp)
    sp.set_defaults(fn=cmd_chat)


def register_demo(sub) -> None:
    """`demo` comes after `serve` in `eterna --help`."""
    sp = sub.add_parser("demo", help="run the scripted multi-NPC scene, then the world's scenes with several "
                                     "characters")
    sp.add_argument("--scene", help="demo or scene JSONL (default: paths.scenes/demo.jsonl, then the folder's scene "
                                    "files)")
    add_flags(sp, npcs=True, index=True)
    _no_adapters_flag(sp)
    sp.set_defaults(fn=cmd_demo)


def cmd_say(args) -> int:
    if args.file is None and (args.text is None or args.npc is None):
        raise EternaError("say needs TEXT and --npc ID, or --file LINES.jsonl")
    if args.file is not None:
        return _say_batch(args)
    from app.config import Cast
    from app.demo import voice_label
    from app.dialogue import check_turn

    cfg = load_config(args)  # fail fast on bad input, before any model is loaded
    check_turn(Cast.load(cfg.paths.npcs, cfg.world), cfg.guard.max_input_chars, args.npc, args.text, args.chapter,
               args.session)
    State.of(args.state, "--state")
    engine = make_engine(args, cfg)
    reply = engine.say(args.npc, args.text, session=args.session, chapter=args.chapter, state=args.state)
    out = reply.to_json()
    srcs = ", ".join(s["chunk"] for s in reply.sources) or "none"
    emit(args, out, f"{reply.npc} [{reply.route}] [{voice_label(reply)}]: {reply.text}\n  sources: {srcs}\n"
                    f"  why: {reply.reason}")
    return 0


def _say_batch(args) -> int:
    """One reply (or {"error": ...}) per input line; a bad line never stops the batch."""
    from app.demo import voice_label

    path = Path(args.file)
    if not path.is_file():
        raise EternaError(f"{path}: file not found")
    engine = make_engine(args)
    failures = 0
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                try:
                    req = json.loads(line)
                except json.JSONDecodeError as e:
                    raise EternaError(f"invalid JSON ({e.msg} at column {e.colno})") from None
                if not isinstance(req, dict) or "npc" not in req or "text" not in req:
                    raise EternaError("each line needs at least 'npc' and 'text'")
                unknown = set(req) - {"npc", "text", "chapter", "session", "state"}
                if unknown:
                    raise EternaError(f"unknown field {sorted(unknown)[0]!r}; allowed: npc, text, chapter, session, "
                                      "state")
                reply = engine.say(req["npc"], req["text"], session=req.get("session", args.session),
                                   chapter=req.get("chapter", args.chapter), state=req.get("state", args.state))
                out = {"line": lineno, **reply.to_json()}
                text = f"{reply.npc} [{reply.route}] [{voice_label(reply)}]: {reply.text}"
            except EternaError as e:
                failures += 1
                out = {"line": lineno, "error": f"{path}:{lineno}: {e}"}
                text = f"error: {path}:{lineno}: {e}"
            except Exception as e:  # a bug must not cost the rest of the batch its replies; report it per line
                failures += 1
                out = {"line": lineno, "error": f"{path}:{lineno}: internal error {type(e).__name__}: {e}",
                       "type": type(e).__name__}
                text = f"error: {out['error']}"
            emit(args, out, text)
    if failures:
        print(f"{failures} line(s) of {path} failed; see their error objects", file=sys.stderr)
        return 3
    return 0


def cmd_chat(args) -> int:
    from app.demo import voice_label

    engine = make_engine(args)
    npc = engine.cast.get(args.npc)
    print(f"Talking to {npc.name} (chapter {args.chapter}). Empty line or Ctrl-D to leave.", flush=True)
    while True:
        try:
            line = input("you> ")
        except EOFError:
            break
        if not line.strip():
            break
        from app.dialogue import Reply

        print(f"{npc.name}> ", end="", flush=True)
        shown = ""
        try:
            for item in engine.stream(npc.id, line, session=args.session, chapter=args.chapter, state=args.state):
                if isinstance(item, Reply):
                    reply = item
                else:
                    shown += item
                    print(item, end="", flush=True)
        except EternaError as e:
            print(f"\nerror: {e}", file=sys.stderr)
            continue
        if reply.text.strip() != shown.strip():  # the final text is authoritative
            print(f"\r{npc.name}> {reply.text}", end="")
        srcs = ", ".join(s["chunk"] for s in reply.sources)
        print(f"\n  [{reply.route}{': ' + srcs if srcs else ''}] [{voice_label(reply)}]", flush=True)
    return 0


def cmd_demo(args) -> int:
    from app.demo import run_demo

    cfg = load_config(args)
    if args.scene:
        scene = Path(args.scene)
    else:  # the one-character demo, then every scene file (a header line) of the world
        folder = cfg.data_path("scenes")
        scene = [folder / "demo.jsonl", *sorted(p for p in folder.glob("*.jsonl") if p.name != "demo.jsonl")]
    return run_demo(cfg, scene, as_json=args.json, adapters=not args.no_adapters)
