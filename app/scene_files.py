"""Scene files: a header line `{"scene", "npcs", "director"?, "reactions"?}`, then the player's lines
`{"text", "to"?, "chapter"?, "state"?}` (an evaluation file adds labels: `expect_addressee`, `answerable_by`,
`answers`, `doc`, `expect_director`, `impersonates`, `note`). A file may hold several scenes, each from its header.

Where scenes are declared: every `*.jsonl` of a world's `paths.scenes` folder whose first line is a scene header is
one scene (`declared_scenes`); the server lists them in `GET /v1/models` and `POST /v1/scenes/{id}/say` plays them.
A demo file of `{"npc", "text"}` lines (the one-character-at-a-time format) is not a scene declaration.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from retrieval.errors import CorpusError, EternaError
from retrieval.fileio import read_jsonl

HEADER = ("scene", "npcs", "director", "reactions", "note")
LINE = ("text", "to", "chapter", "state", "note")
LABELS = ("expect_addressee", "answerable_by", "answers", "doc", "expect_director", "impersonates")


@dataclass
class SceneScript:
    """One scene of a file: its header and its lines (each a dict, labels included), with their line numbers."""

    id: str
    npcs: list[str]
    director: str | None = None
    reactions: int | None = None
    lines: list[tuple[int, dict]] = field(default_factory=list)
    path: Path | None = None
    note: str | None = None


def is_header(obj: dict) -> bool:
    return isinstance(obj, dict) and "scene" in obj and "npcs" in obj and "text" not in obj


def _check_types(path: Path, n: int, obj: dict) -> None:
    where = f"{path}:{n}"
    if "npcs" in obj and (not isinstance(obj["npcs"], list) or not all(isinstance(x, str) for x in obj["npcs"])):
        raise CorpusError(f"{where}: npcs must be a list of character ids")
    for key in ("scene", "director", "to", "expect_addressee", "expect_director", "impersonates", "doc"):
        if obj.get(key) is not None and not isinstance(obj[key], (str, bool) if key == "expect_director" else str):
            raise CorpusError(f"{where}: {key} must be a string")
    if "text" in obj and not isinstance(obj["text"], str):
        raise CorpusError(f"{where}: text must be a string")
    for key in ("answerable_by", "answers"):  # null: the label does not apply to this line
        value = obj.get(key)
        if value is not None and (not isinstance(value, list) or not all(isinstance(x, str) for x in value)):
            raise CorpusError(f"{where}: {key} must be a list of strings")


def load_scenes(path: Path, labels: bool = True) -> list[SceneScript]:
    """Every scene of a scene file; a typed error names the file, line and field. `labels=False`: a play file,
    where evaluation labels are unknown fields."""
    path = Path(path)
    scenes: list[SceneScript] = []
    allowed_line = LINE + (LABELS if labels else ())
    for n, obj in read_jsonl(path):
        if not isinstance(obj, dict):
            raise CorpusError(f"{path}:{n}: each line is a JSON object")
        _check_types(path, n, obj)
        if is_header(obj):
            unknown = set(obj) - set(HEADER)
            if unknown:
                raise CorpusError(f"{path}:{n}: unknown header field {sorted(unknown)[0]!r}; a header has "
                                  f"{', '.join(HEADER)}")
            scenes.append(SceneScript(obj["scene"], list(obj["npcs"]), obj.get("director"), obj.get("reactions"),
                                      path=path, note=obj.get("note")))
            continue
        if "text" not in obj:
            raise CorpusError(f"{path}:{n}: a scene line needs 'text' (or a header needs 'scene' and 'npcs')")
        if not scenes:
            raise CorpusError(f"{path}:{n}: the first line must be a scene header {{\"scene\", \"npcs\", "
                              "\"director\"?}")
        unknown = set(obj) - set(allowed_line)
        if unknown:
            raise CorpusError(f"{path}:{n}: unknown field {sorted(unknown)[0]!r}; a line has "
                              f"{', '.join(allowed_line)}")
        scenes[-1].lines.append((n, obj))
    if not scenes:
        raise CorpusError(f"{path}: no scene header; the first line is {{\"scene\", \"npcs\", \"director\"?}}")
    return scenes


def check_scene_file(path: Path, cast, labels: bool) -> int:
    """`eterna validate` on a scene file: its format, and every character it names in the cast. Returns its lines."""
    ids = {n.id for n in cast.npcs}
    scripts = load_scenes(path, labels=labels)
    for s in scripts:
        for who in [*s.npcs, *([s.director] if s.director else [])]:
            if who not in ids:
                raise CorpusError(f"{path}: scene {s.id!r}: unknown character {who!r}; the cast has "
                                  f"{', '.join(sorted(ids))}")
    return sum(len(s.lines) for s in scripts)


def first_line(path: Path) -> dict | None:
    try:
        with Path(path).open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    obj = json.loads(line)
                    return obj if isinstance(obj, dict) else None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return None


def declared_scenes(folder: Path | None) -> dict[str, SceneScript]:
    """The scenes a world declares: each `*.jsonl` in its scenes folder that starts with a scene header."""
    out: dict[str, SceneScript] = {}
    if folder is None or not Path(folder).is_dir():
        return out
    for path in sorted(Path(folder).glob("*.jsonl")):
        if is_header(first_line(path) or {}):
            for s in load_scenes(path, labels=False):
                out.setdefault(s.id, s)
    return out


def play(engine, script: SceneScript, session: str, reactions: int | None = None) -> Iterator[tuple]:
    """Play a scene's lines in one session: (line number, line, SceneTurn or the line's EternaError) each.
    `reactions`: overrides the header's (default 1)."""
    reactions = reactions if reactions is not None else script.reactions
    scene = engine.scene(script.id, script.npcs, director=script.director, session=session,
                         **({} if reactions is None else {"reactions": reactions}))
    for n, line in script.lines:
        try:
            yield n, line, scene.say(line["text"], to=line.get("to"), chapter=line.get("chapter", 1),
                                     state=line.get("state"))
        except EternaError as e:
            yield n, line, e
