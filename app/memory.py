"""Conversation memory per (session, NPC): the recent exchanges, plus a rolling summary of the older ones.

On disk every exchange is one appended, fsynced JSONL line per session file, written under a file lock, so threads
and processes sharing a sessions folder never interleave or lose turns, and each process reads the lines the others
appended before it answers (it remembers how far it has read). A crash loses at most the turn in flight; a torn
last line is skipped. Sessions never mix: a player's words only ever reach prompts of their own session.

Persistence sits behind a small seam, `SessionStore` (append one exchange atomically; read what was appended after a
position), chosen by `memory.store`: `files` (a JSONL file per session in a folder, the default), `sqlite` (one
database file, `app/stores/sqlite.py`) or `redis` (many servers, `app/stores/redis.py`). The last two are imported
only when named, so importing this module needs neither. Another store is one class registered with
`register_store`. A store that cannot be reached raises `StoreUnavailableError` (the server answers 503).

Each exchange records the lore documents it drew on (`docs`: its evidence, and what the exchanges in its prompt drew
on); `recall` leaves out of the prompt the exchanges, and the summary lines, that drew on a document the caller
says is hidden this turn (a state gate shut again). Records without `docs` (older files) drew on nothing.

RAM holds at most `live_sessions` sessions, so a server's memory stays flat however many players come and go: past
that, the least recently used session is dropped from RAM. One with a file is read back from it when its player
returns; one without a file (no sessions folder) starts afresh.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import threading
from collections import OrderedDict, defaultdict, deque
from pathlib import Path
from typing import Protocol

from filelock import FileLock

from retrieval.errors import EternaError
from retrieval.registry import Registry

_FIRST_SENTENCE = re.compile(r"^(.{1,160}?[.!?])(\s|$)")


class SessionStore(Protocol):
    """Where sessions persist. A session's exchanges are totally ordered; `append` is atomic (one exchange, whole
    or not at all) and durable when it returns; `read` returns the exchanges appended after `position` (0: from the
    start), in order, with the position to read from next; an unknown session gives ([], position). A position
    below the one given means the session now holds less than was read (deleted, or a store that lost data): the
    reader starts it over from 0. A torn record is skipped, never fatal. A store that `memory.store` can name also
    has `configured(memory, sessions)`, a classmethod opening it from the MemoryConfig and paths.sessions."""

    name: str

    def append(self, session: str, record: dict) -> None: ...

    def read(self, session: str, position: int) -> tuple[list[dict], int]: ...


class StoreUnavailableError(EternaError):
    """The session store cannot be reached (Redis down, a database locked past its timeout). The turn fails before
    anything is written; `retry_after` (seconds) is the server's Retry-After."""

    retry_after = 1


STORES: Registry[type] = Registry("session store")


class _Lazy:
    """A registry entry whose class lives in a module imported on first use (its client package may not be installed)."""

    def __init__(self, module: str, attr: str):
        self.module, self.attr = module, attr

    def load(self) -> type:
        return getattr(importlib.import_module(self.module), self.attr)


def register_store(name: str):
    def deco(cls):
        cls.name = name
        return STORES.add(name, cls)
    return deco


def store_names() -> list[str]:
    return STORES.names()


def store_class(name: str, where: str = "") -> type:
    entry = STORES.lookup(name, where)
    return entry.load() if isinstance(entry, _Lazy) else entry


def make_store(name: str, **kwargs) -> SessionStore:
    return store_class(name)(**kwargs)


def open_store(memory, sessions: Path | None) -> SessionStore | None:
    """The store a config names (`memory`: its MemoryConfig; `sessions`: paths.sessions). None: RAM only (the files
    store without a sessions folder)."""
    return store_class(memory.store, "memory.store: ").configured(memory, sessions)


@register_store("files")
class FileStore:
    """One JSONL file per session in `folder`: each exchange one appended, fsynced line under a file lock, so
    threads and processes sharing the folder never interleave or lose turns. Positions are byte offsets."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @classmethod
    def configured(cls, memory, sessions: Path | None) -> FileStore | None:
        return cls(sessions) if sessions is not None else None

    def path(self, session: str) -> Path:
        return self.folder / f"{session}.jsonl"

    def append(self, session: str, record: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(session)
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        with FileLock(str(path) + ".lock"):
            with path.open("ab") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())

    def read(self, session: str, position: int) -> tuple[list[dict], int]:
        try:
            with self.path(session).open("rb") as f:
                if 0 < os.fstat(f.fileno()).st_size < position:  # truncated or deleted and begun again
                    return [], 0
                f.seek(position)
                data = f.read()
        except FileNotFoundError:
            return [], position
        end = data.rfind(b"\n") + 1  # only whole lines; a line being written is read next time
        records = []
        for line in data[:end].splitlines():
            try:
                records.append(json.loads(line))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # a torn line from a crash is skipped, never fatal
        return records, position + end


STORES.add("sqlite", _Lazy("app.stores.sqlite", "SqliteStore"))
STORES.add("redis", _Lazy("app.stores.redis", "RedisStore"))


class SessionMemory:
    def __init__(self, turns: int, store: Path | SessionStore | None = None, summary_chars: int = 400,
                 flagged=None, live_sessions: int = 4096, summarise_every: int = 1):
        """`store`: a sessions folder (the `files` store), another `SessionStore`, or None (RAM only).
        `flagged(text) -> bool`: lines the summary leaves out (attempts to instruct the model)."""
        if live_sessions < 1:
            raise ValueError(f"live_sessions must be at least 1, got {live_sessions}")
        if summarise_every < 1:
            raise ValueError(f"summarise_every must be at least 1, got {summarise_every}")
        self.turns = turns
        self.live_sessions = live_sessions
        # exchanges leave the recent window this many at a time: between two moves the prompt's start (summary,
        # then the kept exchanges) stays put, so a backend keeps its evaluated state and reads only what is new
        self.summarise_every = min(summarise_every, max(turns, 1))
        self.summary_chars = summary_chars
        self.sessions: SessionStore | None = FileStore(store) if isinstance(store, (str, Path)) else store
        self.store = self.sessions.folder if isinstance(self.sessions, FileStore) else None  # the sessions folder
        self._flagged = flagged or (lambda text: False)
        self._recent: dict[tuple[str, str], deque] = defaultdict(deque)
        self._older: dict[tuple[str, str], deque] = defaultdict(lambda: deque(maxlen=64))
        self._offset: dict[str, int] = {}
        self._live: OrderedDict[str, set[str]] = OrderedDict()  # session -> its NPCs, least recently used first
        self._lock = threading.Lock()

    def _touch(self, session: str) -> None:
        """Mark `session` most recently used; drop the least recently used others past `live_sessions` (caller
        holds the lock)."""
        self._live.setdefault(session, set())
        self._live.move_to_end(session)
        while len(self._live) > self.live_sessions:
            self._drop(next(iter(self._live)))

    def _clear(self, session: str) -> None:
        for npc in self._live.get(session, ()):
            self._recent.pop((session, npc), None)
            self._older.pop((session, npc), None)

    def _drop(self, session: str) -> None:
        self._clear(session)
        self._live.pop(session, None)
        self._offset.pop(session, None)

    def live(self) -> int:
        """How many sessions are held in RAM."""
        return len(self._live)

    def _remember(self, session: str, npc: str, user: str, reply: str, docs=()) -> None:
        self._live.setdefault(session, set()).add(npc)
        recent = self._recent[(session, npc)]
        recent.append((user, reply, frozenset(docs)))
        if len(recent) > max(self.turns, 1):
            older = self._older[(session, npc)]
            for _ in range(self.summarise_every):
                moved = recent.popleft()
                if self.turns:
                    older.append(moved)

    def _sync(self, session: str) -> None:
        """Take in what was appended to the session since we last looked (by us or another process)."""
        if self.sessions is None:
            return
        start = self._offset.get(session, 0)
        records, self._offset[session] = self.sessions.read(session, start)
        if self._offset[session] < start:  # the store holds less than we read: what it holds now is the session
            self._clear(session)
            records, self._offset[session] = self.sessions.read(session, 0)
        for rec in records:
            try:
                self._remember(session, rec["npc"], rec["user"], rec["reply"],
                               rec["docs"] if isinstance(rec.get("docs"), list) else ())
            except (KeyError, TypeError):
                continue  # a malformed record is skipped, never fatal

    def recent(self, session: str, npc: str) -> list[tuple[str, str]]:
        return self.context(session, npc)[0]

    def context(self, session: str, npc: str) -> tuple[list[tuple[str, str]], str]:
        """(recent exchanges, oldest first; a summary of the older ones, or "")."""
        recent, summary, _docs, _hidden = self.recall(session, npc)
        return recent, summary

    def recall(self, session: str, npc: str, hidden=frozenset()) -> tuple[list[tuple[str, str]], str, frozenset,
                                                                          int]:
        """(recent exchanges, oldest first; a summary of the older ones, or ""; the documents those drew on; how
        many exchanges were left out), leaving out every exchange that drew on a document in `hidden`."""
        if self.turns == 0:
            return [], "", frozenset(), 0
        with self._lock:
            self._touch(session)
            self._sync(session)
            recent = list(self._recent.get((session, npc), ()))
            older = list(self._older.get((session, npc), ()))
        kept = [x for x in recent if not x[2] & hidden]
        older_kept = [x for x in older if not x[2] & hidden]
        summary = self._summarise(older_kept)
        docs = frozenset().union(*(x[2] for x in kept), *(x[2] for x in older_kept if summary))
        return ([(u, r) for u, r, _ in kept], summary, docs,
                len(recent) - len(kept) + len(older) - len(older_kept))

    def _summarise(self, older: list[tuple[str, str]]) -> str:
        """Extractive and cheap: what the player said earlier, newest kept first within the budget."""
        if not older or self.summary_chars <= 0:
            return ""
        parts: list[str] = []
        used = 0
        for user, _reply, _docs in reversed(older):
            if self._flagged(user):
                continue
            m = _FIRST_SENTENCE.match(user)
            said = (m.group(1) if m else user[:160]).strip()
            if used + len(said) + 3 > self.summary_chars:
                break
            parts.append(said)
            used += len(said) + 3
        if not parts:
            return ""
        return "The player said earlier: " + " | ".join(reversed(parts))

    def seed(self, session: str, npc: str, history: list[tuple[str, str]]) -> None:
        """In-process only: give a stateless session (an OpenAI-style request) the history it brought along."""
        with self._lock:
            self._touch(session)
            for user, reply in history:
                self._remember(session, npc, user, reply)
            self._offset.setdefault(session, 1 << 62)  # never read a file for it

    def forget(self, session: str) -> None:
        """Drop a session from this process's memory (its file, if any, is left alone)."""
        with self._lock:
            self._drop(session)

    def add(self, session: str, npc: str, user: str, reply: str, docs=()) -> None:
        """Remember one exchange; `docs`: the lore documents it drew on."""
        with self._lock:
            self._touch(session)
            if self.sessions is None:
                self._remember(session, npc, user, reply, docs)
                return
            self._sync(session)  # others' turns first
            record = {"npc": npc, "user": user, "reply": reply}
            if docs:
                record["docs"] = sorted(docs)
            self.sessions.append(session, record)
            self._sync(session)  # ours, in the store's order
