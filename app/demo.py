"""`eterna demo`: a scripted scene of the configured world, each reply shown with its route, its sources and who
made its words (`voice_label`: the character's adapter, the base model, or no model at all). A demo file of
`{"npc", "text"}` lines talks to one character at a time; a scene file (a `{"scene", "npcs"}` header,
app/scene_files.py) plays a table of characters; `eterna demo` without `--scene` plays `demo.jsonl`, then every
scene file of the world's scenes folder."""

from __future__ import annotations

import json
import time
from pathlib import Path

from app.config import EternaConfig
from retrieval.errors import CorpusError, EternaError
from retrieval.fileio import read_jsonl


def load_scene(path: Path) -> list[dict]:
    lines = []
    for n, obj in read_jsonl(path, ("npc", "text")):
        unknown = set(obj) - {"npc", "text", "chapter", "session", "note"}
        if unknown:
            raise CorpusError(f"{path}:{n}: unknown field {sorted(unknown)[0]!r}")
        lines.append(obj)
    if not lines:
        raise CorpusError(f"{path}: empty scene")
    return lines


def voice_label(reply) -> str:
    """`adapter: NAME` or `base` for a generated reply; for a reply no model generated, how it was made (`extracted`,
    `idk`, `deflected`); a generated reply the support check replaced says both."""
    answer = reply.grounding.get("answer")
    if not reply.tokens:  # no generation ran this turn
        return answer or "no generation"
    who = f"adapter: {reply.adapter}" if reply.adapter else "base"
    return who if answer in (None, "generated") else f"{answer}, replacing {who}"


def run_demo(config: EternaConfig, scene: Path | list[Path], as_json: bool = False, adapters: bool = True) -> int:
    from rich.console import Console
    from rich.panel import Panel

    from app.dialogue import DialogueEngine
    from app.scene_files import first_line, is_header

    console = Console(highlight=False)
    files = scene if isinstance(scene, list) else [scene]
    tables = [p for p in files if is_header(first_line(p) or {})]
    lines = [x for p in files if p not in tables for x in load_scene(p)]  # bad files fail before models load
    t0 = time.perf_counter()
    # a scripted scene starts from a clean slate: its memory stays in the process, never in paths.sessions
    config = config.model_copy(update={"paths": config.paths.model_copy(update={"sessions": None})})
    engine = DialogueEngine.from_settings(config, adapters=adapters)
    if not as_json:
        voices = ", ".join(engine.adapter_names) or "none (the base model speaks for everyone)"
        console.print(f"[dim]engine ready in {time.perf_counter() - t0:.1f} s; index {engine.index.path.name}; "
                      f"voice adapters: {voices} ({engine.generator.name})[/dim]")
    errors = 0
    for line in lines:
        try:
            reply = engine.say(line["npc"], line["text"], session=line.get("session", "demo"),
                               chapter=line.get("chapter", 1))
        except EternaError as e:
            errors += 1
            if as_json:
                print(json.dumps({"error": str(e), "line": line}, ensure_ascii=False), flush=True)
            else:
                console.print(f"[red]error:[/red] {e}")
            continue
        if as_json:
            print(json.dumps({**reply.to_json(), "note": line.get("note")}, ensure_ascii=False), flush=True)
            continue
        name = engine.cast.get(reply.npc).name
        if line.get("note"):
            console.print(f"\n[bold yellow]# {line['note']}[/bold yellow]")
        console.print(f"[bold cyan]Player[/bold cyan] (chapter {reply.chapter}) to {name}: {line['text']}")
        srcs = ", ".join(f"{s['chunk']} ({s['score']:.2f})" for s in reply.sources) or "none"
        made = (f"{reply.tokens['reply']} tokens in {reply.timings['generate_ms'] / 1000:.1f} s "
                f"({engine.generator.name})" if reply.tokens.get("reply")
                else f"{reply.grounding.get('answer', 'answered')}, no generation")
        body = (f"{reply.text}\n\n[dim]route: {reply.route} — {reply.reason}\nsources: {srcs}\n"
                f"{made}; turn {reply.timings['total_ms'] / 1000:.2f} s[/dim]")
        console.print(Panel(body, title=f"{name} \\[{reply.route}] \\[{voice_label(reply)}]", title_align="left"))
    for path in tables:
        errors += play_table(engine, path, console, as_json)
    if not as_json:
        console.print(f"[dim]scene done in {time.perf_counter() - t0:.1f} s[/dim]")
    return 0 if errors == 0 else 3


def play_table(engine, path: Path, console, as_json: bool) -> int:
    """A scene file: each line's replies (a narration, the answer, the reactions), who answered and why."""
    from rich.panel import Panel

    from app.scene_files import load_scenes, play

    errors = 0
    for script in load_scenes(path, labels=False):
        if not as_json:
            names = ", ".join(engine.cast.get(n).name for n in script.npcs)
            console.print(f"\n[bold magenta]Scene {script.id}: {names}[/bold magenta]"
                          + (f" [dim]({script.note})[/dim]" if script.note else ""))
        for _n, line, turn in play(engine, script, f"demo-{script.id}"):
            if isinstance(turn, EternaError):
                errors += 1
                console.print(f"[red]error:[/red] {turn}") if not as_json else print(json.dumps({"error": str(turn)}))
                continue
            if as_json:
                print(json.dumps({**turn.to_json(), "note": line.get("note")}, ensure_ascii=False), flush=True)
                continue
            if line.get("note"):
                console.print(f"\n[bold yellow]# {line['note']}[/bold yellow]")
            console.print(f"[bold cyan]Player[/bold cyan]: {line['text']}  [dim]({turn.how}: {turn.responder}"
                          f"{'; ' + turn.why if turn.why else ''})[/dim]")
            for r in turn.replies:
                srcs = ", ".join(s["chunk"] for s in r.sources) or "none"
                console.print(Panel(f"{r.text}\n\n[dim]{r.reason or r.route}; sources: {srcs}; "
                                    f"{r.timings['total_ms'] / 1000:.2f} s[/dim]",
                                    title=f"{engine.cast.get(r.npc).name} \\[{r.route}] \\[{voice_label(r)}]",
                                    title_align="left"))
    return errors
