"""BEIR-format data sets (e.g. SciFact in ../shared/data) for retrieval measurements, and their documents
written as Eterna lore so they go through the same corpus -> chunking -> index pipeline as a game's lore."""

from __future__ import annotations

import gzip
import json
from pathlib import Path


def load_beir(folder: Path, split: str = "test", limit: int = 0) -> tuple[list[dict], dict[str, str], dict]:
    """(corpus [{_id, title, text}], queries {id: text}, qrels {query id: {doc id: relevance}}); `limit` keeps
    the first N queries of the split."""
    folder = Path(folder)
    corpus = [json.loads(x) for x in gzip.open(folder / "corpus.jsonl.gz", "rt", encoding="utf-8")]
    queries = {q["_id"]: q["text"] for q in map(json.loads, (folder / "queries.jsonl").read_text().splitlines())}
    qrels: dict[str, dict[str, int]] = {}
    for line in (folder / "qrels" / f"{split}.tsv").read_text().splitlines()[1:]:
        q, d, s = line.split("\t")
        qrels.setdefault(q, {})[d] = int(s)
    if limit:
        qrels = dict(list(qrels.items())[:limit])
    return corpus, queries, qrels


def write_as_lore(docs: list[dict], folder: Path) -> Path:
    """One markdown file with front matter per document (kind `book`, visible to all, chapter 1)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for d in docs:
        (folder / f"{d['_id']}.md").write_text(
            f"---\ntitle: {json.dumps(d['title'] or d['_id'])}\nkind: book\nnpc_scope: all\nchapter: 1\n---\n"
            f"{d['text'] or d['title']}\n", encoding="utf-8")
    return folder
