"""Conversation memory: the recent exchanges per (session, NPC), optionally persisted as JSONL per session.

On disk every exchange is one appended, fsynced line, so a crash loses at most the turn in flight.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict, deque
from pathlib import Path


class SessionMemory:
    def __init__(self, turns: int, store: Path | None = None):
        self.turns = turns
        self.store = Path(store) if store is not None else None
        self._mem: dict[tuple[str, str], deque] = defaultdict(lambda: deque(maxlen=max(turns, 1)))
        self._loaded: set[str] = set()

    def _load(self, session: str) -> None:
        if self.store is None or session in self._loaded:
            return
        self._loaded.add(session)
        path = self.store / f"{session}.jsonl"
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                    self._mem[(session, rec["npc"])].append((rec["user"], rec["reply"]))
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a torn last line from a crash is skipped, never fatal

    def recent(self, session: str, npc: str) -> list[tuple[str, str]]:
        if self.turns == 0:
            return []
        self._load(session)
        return list(self._mem[(session, npc)])

    def add(self, session: str, npc: str, user: str, reply: str) -> None:
        self._load(session)
        self._mem[(session, npc)].append((user, reply))
        if self.store is not None:
            self.store.mkdir(parents=True, exist_ok=True)
            line = json.dumps({"npc": npc, "user": user, "reply": reply}, ensure_ascii=False) + "\n"
            with (self.store / f"{session}.jsonl").open("a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
