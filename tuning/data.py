"""Strict loaders of training data (the first problem raises, naming file and line) and the trainer's row shape.

The formats themselves live in tuning/formats.py (auto-detected per file); the reporting gate that lists every
problem instead of raising on the first is tuning/gate.py. Chat examples teach form, so they hold user/assistant
turns only; the trainer prepends the character's persona as the system turn, exactly as the runtime does.
"""

from __future__ import annotations

from pathlib import Path

from retrieval.errors import CorpusError
from retrieval.fileio import sha256_file
from tuning.formats import parse_file


def _strict(path: Path, kind: str, fmt: str | None, empty: str) -> list:
    rows = []
    for line, _, value, issues in parse_file(Path(path), kind, fmt):
        if issues:
            raise CorpusError(f"{path}:{line}: {issues[0].message}")
        rows.append(value)
    if not rows:
        raise CorpusError(f"{path}: {empty}")
    return rows


def load_chat_examples(path: Path, fmt: str | None = None) -> list[list[dict]]:
    """Every row of a chat file (any chat format, detected unless `fmt`) as messages; the first problem raises."""
    return _strict(path, "chat", fmt, "no examples")


def load_preferences(path: Path, fmt: str | None = None) -> list[dict]:
    """Every row of a preference file as {prompt, chosen, rejected[, system, history]}; the first problem raises."""
    return _strict(path, "preference", fmt, "no preference pairs")


def to_prompt_completion(examples: list[list[dict]], system: str | None) -> list[dict]:
    """Conversational prompt/completion rows: loss falls on the final assistant turn only."""
    rows = []
    for messages in examples:
        msgs = list(messages)
        if system and msgs[0]["role"] != "system":
            msgs = [{"role": "system", "content": system}, *msgs]
        rows.append({"prompt": msgs[:-1], "completion": [msgs[-1]]})
    return rows


def data_fingerprint(path: Path) -> str:
    return sha256_file(path)[:16]
