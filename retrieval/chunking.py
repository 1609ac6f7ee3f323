"""Splitting documents into retrievable chunks: by markdown section, then packed paragraphs/sentences."""

from __future__ import annotations

import re

from retrieval.fileio import sha256_bytes
from retrieval.types import Chunk, Document

_SENT_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z¿¡\"'(])")


def _sections(body: str, title: str) -> list[tuple[str, list[str]]]:
    """[(heading, paragraphs)]; a top-level `# Title` line is dropped (the title is metadata)."""
    sections: list[tuple[str, list[str]]] = [(title, [])]
    para: list[str] = []

    def flush() -> None:
        if para:
            sections[-1][1].append(" ".join(s.strip() for s in para))
            para.clear()

    for line in body.splitlines():
        m = re.match(r"^(#{1,6})\s+(.*)$", line)
        if m:
            flush()
            if len(m.group(1)) == 1 and not sections[-1][1] and len(sections) == 1:
                continue
            sections.append((m.group(2).strip(), []))
        elif not line.strip():
            flush()
        else:
            para.append(line)
    flush()
    return [(h, ps) for h, ps in sections if ps]


def _split_long(text: str, max_words: int) -> list[str]:
    if len(text.split()) <= max_words:
        return [text]
    out, cur = [], []
    for sent in _SENT_RE.split(text):
        words = sent.split()
        while len(words) > max_words:  # a run-on sentence: hard split
            if cur:
                out.append(" ".join(cur))
                cur = []
            out.append(" ".join(words[:max_words]))
            words = words[max_words:]
        if cur and len(cur) + len(words) > max_words:
            out.append(" ".join(cur))
            cur = []
        cur.extend(words)
    if cur:
        out.append(" ".join(cur))
    return out


def chunk_document(doc: Document, max_words: int = 120, overlap_words: int = 25) -> list[Chunk]:
    """Pack each section's paragraphs into chunks of at most ~max_words words.

    A chunk never spans two sections, so its heading describes it. Consecutive chunks of one section share
    up to `overlap_words` trailing words of the previous chunk, so a fact cut at a boundary is still whole in one.
    """
    if max_words < 16:
        raise ValueError("max_words must be at least 16")
    if not 0 <= overlap_words < max_words // 2:
        raise ValueError("overlap_words must be in [0, max_words/2)")
    chunks: list[Chunk] = []
    for heading, paragraphs in _sections(doc.body, doc.title):
        pieces = [p for para in paragraphs for p in _split_long(para, max_words - overlap_words)]
        packed: list[str] = []
        cur: list[str] = []
        for piece in pieces:
            n = len(piece.split())
            if cur and sum(len(c.split()) for c in cur) + n > max_words:
                packed.append(" ".join(cur))
                tail = " ".join(cur).split()[-overlap_words:] if overlap_words else []
                cur = [" ".join(tail)] if tail else []
            cur.append(piece)
        if cur:
            packed.append(" ".join(cur))
        for text in packed:
            n = len(chunks)
            chunk = Chunk(id=f"{doc.id}#{n}", doc=doc.id, title=doc.title, kind=doc.kind, npc_scope=doc.npc_scope,
                          chapter=doc.chapter, heading=heading, text=text, hash="")
            chunks.append(Chunk(**{**chunk.__dict__, "hash": sha256_bytes(chunk.embed_text().encode())[:16]}))
    return chunks
