"""A scene's transcript: who said what, in order, shared by every character of the scene and kept in the session
store (`memory.store`) under its own key, so any server process continues a scene; in the engine's process
without a store."""

from __future__ import annotations

import threading
import weakref


class RamStore:
    """A session store in this process only (the engine has none): append and read by list position."""

    name = "ram"

    def __init__(self):
        self.data: dict[str, list[dict]] = {}

    def append(self, session: str, record: dict) -> None:
        self.data.setdefault(session, []).append(record)

    def read(self, session: str, position: int) -> tuple[list[dict], int]:
        rows = self.data.get(session, [])
        return rows[position:], len(rows)


_RAM: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def transcript_store(memory):
    """The engine's session store, or one kept in RAM beside its memory (the same for every scene of it)."""
    if memory.sessions is not None:
        return memory.sessions
    return _RAM.setdefault(memory, RamStore())


class Transcript:
    """The scene's lines in order, each {"speaker", "text", "role" (line, answer, reaction, narration), "facts"?
    (what a grounded line said: evidence for the others), "impersonates"?}, in a session store under `key`; read
    back incrementally (other processes' lines too)."""

    def __init__(self, store, key: str):
        self.store, self.key, self._lines, self._pos, self._lock = store, key, [], 0, threading.Lock()

    def lines(self) -> list[dict]:
        with self._lock:
            got, pos = self.store.read(self.key, self._pos)
            if pos < self._pos:  # the store holds less than was read: start over
                (got, pos), self._lines = self.store.read(self.key, 0), []
            self._lines += [r for r in got if isinstance(r, dict) and "speaker" in r and "text" in r]
            self._pos = pos
            return list(self._lines)

    def add(self, speaker: str, text: str, role: str, **extra) -> None:
        self.store.append(self.key, {"speaker": speaker, "text": text, "role": role,
                                     **{k: v for k, v in extra.items() if v not in (None, False)}})
