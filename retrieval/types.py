"""Result and record types of the knowledge layer: one type per concept."""

from __future__ import annotations

from dataclasses import dataclass, field

from retrieval.gates import State, gate_open


@dataclass(frozen=True)
class Document:
    """One lore file: front matter plus markdown body. `id` is the file stem."""

    id: str
    title: str
    kind: str
    npc_scope: tuple[str, ...] | None  # None means `all`
    chapter: int
    body: str
    path: str
    requires: str | None = None  # a state gate (retrieval.gates): visible only while it holds


@dataclass(frozen=True)
class Chunk:
    """A retrievable piece of one document, carrying the document's visibility metadata."""

    id: str  # "<doc>#<n>"
    doc: str
    title: str
    kind: str
    npc_scope: tuple[str, ...] | None
    chapter: int
    heading: str
    text: str
    hash: str  # sha256 of the embedded text: reuse key for incremental rebuilds
    requires: str | None = None  # the document's state gate (retrieval.gates), None: none

    def embed_text(self) -> str:
        head = f"{self.title}: {self.heading}" if self.heading and self.heading != self.title else self.title
        return f"{head}\n{self.text}"


@dataclass(frozen=True)
class Scope:
    """Who is asking, how far they are in the story, and the game's state. `kinds=None` means every kind;
    `state=None` gates nothing (a `State`, even an empty one, closes every document whose `requires` is false)."""

    npc: str | None = None
    kinds: frozenset[str] | None = None
    chapter: int | None = None
    state: State | None = None

    def allows(self, chunk: Chunk | Document) -> bool:
        if self.chapter is not None and chunk.chapter > self.chapter:
            return False
        if not gate_open(chunk.requires, self.state):
            return False
        if self.npc is None:
            return True
        if chunk.npc_scope is not None:
            return self.npc in chunk.npc_scope
        return self.kinds is None or chunk.kind in self.kinds


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float
    rank: int

    def source(self) -> dict:
        return {"doc": self.chunk.doc, "chunk": self.chunk.id, "score": round(float(self.score), 4)}


@dataclass
class RebuildStats:
    generation: str
    documents: int
    chunks: int
    embedded: int
    reused: int
    seconds: float
    path: str
    extra: dict = field(default_factory=dict)
