"""Splitting documents into retrievable chunks: by markdown section, then whole sentences packed into chunks.

Each section's markdown is rendered to plain prose first (`retrieval.text.markdown_to_text`: lists and tables
become sentences, markup goes), then cut into sentences by the code base's one splitter, so a chunk never holds
markup and never starts or ends mid-sentence; consecutive chunks overlap by whole sentences.
"""

from __future__ import annotations

import re

from retrieval.fileio import sha256_bytes
from retrieval.text import markdown_to_text, split_sentences
from retrieval.types import Chunk, Document

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")


def _sections(body: str, title: str) -> list[tuple[str, list[str]]]:
    """[(heading, sentences)]; a top-level `# Title` line before any text is dropped (the title is metadata).
    Heading lines inside code fences are not headings."""
    raw: list[tuple[str, list[str]]] = [(title, [])]
    fence = None
    for line in body.splitlines():
        f = _FENCE.match(line)
        if f:
            mark = f.group(1)[0]
            fence = None if fence == mark else (fence or mark)
        m = None if fence or f else _HEADING.match(line)
        if m:
            if len(m.group(1)) == 1 and len(raw) == 1 and not "".join(raw[0][1]).strip():
                continue
            raw.append((markdown_to_text(m.group(2)).rstrip(".") or m.group(2).strip(), []))
        else:
            raw[-1][1].append(line)
    out = []
    for heading, lines in raw:
        sentences = [s for para in markdown_to_text("\n".join(lines)).split("\n") for s in split_sentences(para)]
        if sentences:
            out.append((heading, sentences))
    return out


# the version of the rules below and retrieval.text's: an index built under other rules is rebuilt (its
# unchanged chunks' vectors reused)
CHUNK_RULES = 2
HARD_MAX_WORDS = 200  # about the embedder's 256-token window: only a run-on sentence longer than this is cut


def _pieces(sentences: list[str]) -> list[str]:
    """Sentences; a run-on one longer than HARD_MAX_WORDS cut into word windows (the only cut inside a sentence).
    A sentence longer than a chunk's size stays whole, as a chunk of its own."""
    out = []
    for sent in sentences:
        words = sent.split()
        while len(words) > HARD_MAX_WORDS:
            out.append(" ".join(words[:HARD_MAX_WORDS]))
            words = words[HARD_MAX_WORDS:]
        if words:
            out.append(" ".join(words))
    return out


def chunk_document(doc: Document, max_words: int = 120, overlap_words: int = 25) -> list[Chunk]:
    """Pack each section's paragraphs into chunks of at most ~max_words words.

    A chunk never spans two sections, so its heading describes it. Consecutive chunks of one section share the
    previous chunk's last whole sentences, up to `overlap_words` words, so a chunk never starts mid-sentence.
    """
    if max_words < 16:
        raise ValueError("max_words must be at least 16")
    if not 0 <= overlap_words < max_words // 2:
        raise ValueError("overlap_words must be in [0, max_words/2)")
    chunks: list[Chunk] = []
    for heading, sentences in _sections(doc.body, doc.title):
        packed: list[str] = []
        cur: list[str] = []
        for piece in _pieces(sentences):
            n = len(piece.split())
            if cur and sum(len(c.split()) for c in cur) + n > max_words:
                packed.append(" ".join(cur))
                tail: list[str] = []  # the previous chunk's last whole sentences, up to overlap_words
                for prev in reversed(cur):
                    if sum(len(t.split()) for t in tail) + len(prev.split()) > overlap_words:
                        break
                    tail.insert(0, prev)
                cur = tail
            cur.append(piece)
        if cur:
            packed.append(" ".join(cur))
        for text in packed:
            n = len(chunks)
            chunk = Chunk(id=f"{doc.id}#{n}", doc=doc.id, title=doc.title, kind=doc.kind, npc_scope=doc.npc_scope,
                          chapter=doc.chapter, heading=heading, text=text, hash="", requires=doc.requires)
            chunks.append(Chunk(**{**chunk.__dict__, "hash": sha256_bytes(chunk.embed_text().encode())[:16]}))
    return chunks
