"""Loading lore: markdown files with YAML front matter (title, kind, npc_scope, chapter; optionally `requires`, a
state gate in the language of retrieval/gates.py), strictly validated."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from pathlib import Path

import yaml

from retrieval.errors import CorpusError, yaml_error_message
from retrieval.gates import GateError, compile_gate
from retrieval.types import Document

FRONT_KEYS = ("title", "kind", "npc_scope", "chapter")
OPTIONAL_KEYS = ("requires",)
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_DOC_BYTES = 5 * 1024 * 1024  # one lore file; bigger ones are almost always a mistake (a dump, a binary)


def _too_big(path: Path, size: int, max_bytes: int) -> CorpusError:
    return CorpusError(f"{path}: {size} bytes, over the limit of {max_bytes} bytes per document; split it into "
                       "smaller documents (or raise max_doc_bytes if it really is one document)")


def parse_document(path: Path, text: str | None = None, kinds: Sequence[str] | None = None, *,
                   max_bytes: int = MAX_DOC_BYTES) -> Document:
    """One lore file. `kinds`: the lore kinds the world declares (None accepts any non-empty kind); files over
    `max_bytes` are refused before they are read."""
    path = Path(path)
    if text is None:
        size = path.stat().st_size
        if size > max_bytes:
            raise _too_big(path, size, max_bytes)
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise CorpusError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save the file as "
                              "UTF-8") from None
    elif len(text.encode("utf-8")) > max_bytes:
        raise _too_big(path, len(text.encode("utf-8")), max_bytes)
    if not text.strip():
        raise CorpusError(f"{path}: empty file; write front matter ({', '.join(FRONT_KEYS)}) and text, "
                          "or delete the file")
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise CorpusError(f"{path}:1: missing front matter; start the file with a '---' line, "
                          f"then {', '.join(FRONT_KEYS)}, then '---'")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise CorpusError(f"{path}:1: front matter is not closed; add a '---' line after the keys") from None
    try:
        meta = yaml.safe_load("\n".join(lines[1:end])) or {}
    except yaml.YAMLError as e:
        raise CorpusError(yaml_error_message(path, e, "invalid YAML in front matter", first_line=2)) from None
    if not isinstance(meta, dict):
        raise CorpusError(f"{path}:2: front matter must be a mapping of {', '.join(FRONT_KEYS)}")

    def where(key: str) -> str:
        for i in range(1, end):
            if lines[i].lstrip().startswith(f"{key}:"):
                return f"{path}:{i + 1}"
        return f"{path}:1"

    unknown = sorted(set(meta) - set(FRONT_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise CorpusError(f"{where(unknown[0])}: unknown front-matter key {unknown[0]!r}; "
                          f"allowed keys are {', '.join(FRONT_KEYS + OPTIONAL_KEYS)}")
    missing = [k for k in FRONT_KEYS if k not in meta]
    if missing:
        raise CorpusError(f"{path}:1: front matter lacks {', '.join(missing)}")
    title = meta["title"]
    if not isinstance(title, str) or not title.strip():
        raise CorpusError(f"{where('title')}: title must be a non-empty string")
    kind = meta["kind"]
    if not isinstance(kind, str) or not _ID_RE.match(kind):
        raise CorpusError(f"{where('kind')}: kind must be a word such as 'location', got {kind!r}")
    if kinds is not None and kind not in kinds:
        raise CorpusError(f"{where('kind')}: kind {kind!r} is not declared by this world ({', '.join(kinds)}); "
                          "fix the file or add the kind to world.kinds in the config")
    scope = meta["npc_scope"]
    if scope == "all":
        npc_scope = None
    elif isinstance(scope, list) and scope and all(isinstance(s, str) and _ID_RE.match(s) for s in scope):
        npc_scope = tuple(scope)
    else:
        raise CorpusError(f"{where('npc_scope')}: npc_scope must be 'all' or a non-empty list of NPC ids, "
                          f"got {scope!r}")
    chapter = meta["chapter"]
    if isinstance(chapter, bool) or not isinstance(chapter, int) or chapter < 1:
        raise CorpusError(f"{where('chapter')}: chapter must be a positive integer, got {chapter!r}")
    requires = meta.get("requires")
    if requires is not None:
        if not isinstance(requires, str):
            raise CorpusError(f"{where('requires')}: requires must be an expression in quotes, such as "
                              f"\"quest.done and rep.guild >= 2\", got {requires!r}")
        try:
            compile_gate(requires)
        except GateError as e:
            raise CorpusError(f"{where('requires')}: requires {requires!r}: {e} (docs/worlds.md, "
                              "\"State-gated lore\")") from None
        requires = requires.strip()
    body = "\n".join(lines[end + 1:]).strip()
    if not body:
        raise CorpusError(f"{path}:{end + 2}: document has no text after the front matter")
    return Document(id=path.stem, title=title.strip(), kind=kind, npc_scope=npc_scope, chapter=chapter,
                    body=body, path=str(path), requires=requires)


def load_corpus(root: Path, kinds: Sequence[str] | None = None,
                npc_ids: Collection[str] | None = None, *, max_doc_bytes: int = MAX_DOC_BYTES) -> list[Document]:
    """All `*.md` files under root (recursively), sorted by path; ids must be unique. With `kinds`, a document's kind
    must be declared; with `npc_ids` (the cast), every id in an `npc_scope` must name a character. A file over
    `max_doc_bytes` is refused."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: corpus directory not found; pass --corpus DIR with your lore files")
    docs: list[Document] = []
    seen: dict[str, str] = {}
    for path in sorted(root.rglob("*.md")):
        if path.name.lower() == "readme.md" or not path.is_file():
            continue
        doc = parse_document(path, kinds=kinds, max_bytes=max_doc_bytes)
        if npc_ids is not None and doc.npc_scope is not None:
            bad = [n for n in doc.npc_scope if n not in npc_ids]
            if bad:
                lines = Path(path).read_text(encoding="utf-8").splitlines()
                line = next((i + 1 for i, t in enumerate(lines) if t.lstrip().startswith("npc_scope:")), 1)
                raise CorpusError(f"{path}:{line}: npc_scope names {bad[0]!r}, who is not in the cast "
                                  f"({', '.join(sorted(npc_ids))}); a typo here hides the document from everyone")
        if doc.id in seen:
            raise CorpusError(f"{path}: document id {doc.id!r} also used by {seen[doc.id]}; rename one file")
        seen[doc.id] = str(path)
        docs.append(doc)
    if not docs:
        raise CorpusError(f"{root}: no .md lore documents found")
    return docs
