"""Player-input guard: normalises text and rejects what cannot be served, with a typed error saying why."""

from __future__ import annotations

import re
import unicodedata

from retrieval.errors import InputError

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200f\u2028\u2029\ufeff]")


def clean_player_text(text: object, max_chars: int) -> str:
    """NFC-normalise, drop control and zero-width characters, collapse whitespace; then check length."""
    if not isinstance(text, str):
        raise InputError(f"player text must be a string, got {type(text).__name__}")
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub("", text)
    text = re.sub(r"\s+", " ", text).strip()
    if not text:
        raise InputError("player text is empty (after removing whitespace and control characters); say something")
    if len(text) > max_chars:
        raise InputError(f"player text is {len(text)} characters; the limit is {max_chars} "
                         "(guard.max_input_chars in the config)")
    return text


def check_chapter(chapter: object) -> int:
    if isinstance(chapter, bool) or not isinstance(chapter, int) or chapter < 1:
        raise InputError(f"chapter must be a positive integer, got {chapter!r}")
    return chapter


_SESSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_session(session: object) -> str:
    if not isinstance(session, str) or not _SESSION.match(session) or ".." in session:
        raise InputError(f"session id {session!r} is invalid; use 1-64 letters, digits, '_', '-' or '.'")
    return session
