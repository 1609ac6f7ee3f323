"""Result and record types of the knowledge layer: one type per concept."""

from __future__ import annotations

from dataclasses import dataclass, field


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

    def embed_text(self) -> str:
        head = f"{self.title}: {self.heading}" if self.heading and self.heading != self.title else self.title
        return f"{head}\n{self.text}"


@dataclass(frozen=True)
class Scope:
    """Who is asking and how far they are in the story. `kinds=None` means every kind."""

    npc: str | None = None
    kinds: frozenset[str] | None = None
    chapter: int | None = None

    def allows(self, chunk: Chunk | Document) -> bool:
        if self.chapter is not None and chunk.chapter > self.chapter:
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
