"""BEIR-format documents (e.g. SciFact in ../shared/data; read with `retrieval_eval.read_beir`) written as Eterna
lore, so they go through the same corpus -> chunking -> index pipeline as a game's lore."""

from __future__ import annotations

import json
from pathlib import Path


def write_as_lore(docs: list[dict], folder: Path) -> Path:
    """One markdown file with front matter per document (kind `book`, visible to all, chapter 1)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for d in docs:
        (folder / f"{d['_id']}.md").write_text(
            f"---\ntitle: {json.dumps(d['title'] or d['_id'])}\nkind: book\nnpc_scope: all\nchapter: 1\n---\n"
            f"{d['text'] or d['title']}\n", encoding="utf-8")
    return folder
