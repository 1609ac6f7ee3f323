"""The on-disk FAISS index: immutable generations, an atomic CURRENT pointer, and a manifest per generation.

Layout of an index directory:

    index/
      CURRENT                    name of the live generation (replaced atomically)
      generations/<name>/
        manifest.json            format, embedder id/dim/fingerprint, corpus hashes, chunking config, counts
        index.faiss              exact inner-product index over L2-normalised vectors (cosine)
        vectors.npy              (N, dim) float32 - kept for incremental rebuilds
        chunks.jsonl             chunk records in FAISS id order

Readers open CURRENT once, so a rebuild running next to a live game never exposes a half-written index.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import faiss
import numpy as np

from retrieval.embeddings import Embedder
from retrieval.errors import IndexMismatchError, IndexMissingError
from retrieval.integrity import (
    check_generation_name,
    check_manifest,
    check_vectors,
    fix_hint,
    guarded,
    verify_checksums,
)
from retrieval.types import Chunk, Hit, Scope

FORMAT = "eterna-index/1"
_OPEN_ATTEMPTS = 3  # CURRENT re-read when the generation it named vanished while being opened


def _chunk_from_json(obj: dict) -> Chunk:
    scope = obj["npc_scope"]
    return Chunk(**{**obj, "npc_scope": tuple(scope) if scope is not None else None})


def read_current(root: Path) -> Path:
    """Folder of the live generation named by CURRENT; a missing, garbled or escaping CURRENT is a clear error."""
    root = Path(root)
    current = root / "CURRENT"
    if not current.is_file():
        raise IndexMissingError(f"no index at {root} (missing {current.name}); build one with "
                                f"`eterna index rebuild --index {root}`")
    seen = None
    for _ in range(_OPEN_ATTEMPTS):  # a rebuild may swap CURRENT and prune the old generation between our reads
        name = guarded(current, root, lambda: current.read_bytes().decode("utf-8")).strip()
        gen = root / "generations" / check_generation_name(name, current, root)
        if (gen / "manifest.json").is_file() or name == seen:
            break
        seen = name
    if not (gen / "manifest.json").is_file():
        raise IndexMissingError(f"{current} points to {gen.name}, which is missing or incomplete; "
                                f"{fix_hint(root)}")
    return gen


class LoreIndex:
    """A loaded generation: FAISS index + chunk records + manifest. Search is exact and filterable."""

    def __init__(self, path: Path, manifest: dict, chunks: list[Chunk], index: faiss.Index, lexical=None):
        self.path = Path(path)
        self.manifest = manifest
        self.chunks = chunks
        self.index = index
        self.lexical = lexical  # LexicalIndex of the same chunks, or None (a generation built before BM25)
        self._chapter = np.array([c.chapter for c in chunks], dtype=np.int64)

    @classmethod
    def open(cls, root: Path, embedder: Embedder | None = None) -> LoreIndex:
        """Open the live generation; with an embedder, refuse one built by another model. A generation pruned or
        replaced between reading CURRENT and reading its files is not an error: CURRENT is read again."""
        root = Path(root)
        for attempt in range(_OPEN_ATTEMPTS):
            gen = read_current(root)
            try:
                return cls._open_generation(root, gen, embedder)
            except (IndexMismatchError, IndexMissingError):
                try:
                    moved = not gen.is_dir() or (root / "CURRENT").read_text(encoding="utf-8").strip() != gen.name
                except (OSError, UnicodeDecodeError):
                    moved = True  # the next read_current names the problem
                if not moved or attempt == _OPEN_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    @classmethod
    def _open_generation(cls, root: Path, gen: Path, embedder: Embedder | None) -> LoreIndex:
        verify_checksums(gen, root)  # a generation with checksums: every file is whole before any parser runs
        path = gen / "manifest.json"
        manifest = check_manifest(guarded(path, root, lambda: json.loads(path.read_text(encoding="utf-8"))),
                                  path, root)
        if manifest.get("format") != FORMAT:
            raise IndexMismatchError(f"{gen}/manifest.json: format {manifest.get('format')!r}, expected "
                                     f"{FORMAT!r}; rebuild with `eterna index rebuild --index {root}`")
        if embedder is not None:
            check_embedder(manifest, embedder, root)
        path = gen / "chunks.jsonl"
        chunks = guarded(path, root, lambda: [_chunk_from_json(json.loads(line)) for line in
                                              path.read_text(encoding="utf-8").splitlines() if line.strip()])
        index = guarded(gen / "index.faiss", root, lambda: faiss.read_index(str(gen / "index.faiss")))
        if index.ntotal != len(chunks):
            raise IndexMismatchError(f"{gen}: {index.ntotal} vectors but {len(chunks)} chunks; {fix_hint(root)}")
        if index.d != manifest["embedder"]["dim"]:
            raise IndexMismatchError(f"{gen}/index.faiss: dimension {index.d} but the manifest's embedder has dim "
                                     f"{manifest['embedder']['dim']}; {fix_hint(root)}")
        check_vectors(gen, root, index.ntotal, index.d)
        lexical = None
        if (gen / "bm25" / "eterna_lexical.json").is_file():
            from retrieval.lexical import LexicalIndex

            lexical = guarded(gen / "bm25", root, lambda: LexicalIndex.load(gen / "bm25"))
            if lexical.n_docs != len(chunks):
                raise IndexMismatchError(f"{gen}/bm25: {lexical.n_docs} documents but {len(chunks)} chunks; "
                                         f"{fix_hint(root)}")
        elif (gen / "bm25").is_dir():
            raise IndexMissingError(f"{gen}/bm25/eterna_lexical.json: missing; {fix_hint(root)}")
        if not (gen / "manifest.json").is_file():  # pruned while we read it: the probes above may have missed files
            raise IndexMissingError(f"{gen}: removed while it was being opened; {fix_hint(root)}")
        return cls(gen, manifest, chunks, index, lexical)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def search_vector(self, query: np.ndarray, k: int, scope: Scope | None = None) -> list[Hit]:
        """query: (dim,) float32 normalised. Filters by NPC scope and chapter inside FAISS (IDSelector)."""
        if k <= 0 or not self.chunks:
            return []
        params = None
        if scope is not None and (scope.npc is not None or scope.chapter is not None):
            allowed = np.array([i for i, c in enumerate(self.chunks) if scope.allows(c)], dtype=np.int64)
            if allowed.size == 0:
                return []
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
            k = min(k, int(allowed.size))
        k = min(k, len(self.chunks))
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)  # (1, dim)
        scores, ids = self.index.search(q, k, params=params)  # (1, k), (1, k)
        return [Hit(self.chunks[int(i)], float(s), rank) for rank, (s, i) in
                enumerate(zip(scores[0], ids[0])) if i >= 0]

    def search_hybrid(self, text: str, query: np.ndarray, k: int, scope: Scope | None = None, *,
                      weight: float = 0.5, candidates: int = 20) -> list[Hit]:
        """Dense and BM25 candidates under the same filters, fused (convex mix of normalised scores); the hits
        keep their dense cosine as `score`, so thresholds and evidence selection stay calibrated. Without a lexical
        index (an older generation) this is dense search."""
        if self.lexical is None:
            return self.search_vector(query, k, scope)
        from retrieval.lexical import fuse

        dense = self.search_vector(query, max(k, candidates), scope)
        allowed = None
        if scope is not None and (scope.npc is not None or scope.chapter is not None):
            allowed = np.array([scope.allows(c) for c in self.chunks], dtype=bool)
        lex = self.lexical.search(text, max(k, candidates), allowed)
        order = fuse([(h.chunk.id, h.score) for h in dense], [(self.chunks[i].id, s) for i, s in lex], weight)[:k]
        row = {c.id: i for i, c in enumerate(self.chunks)}
        cos = {h.chunk.id: h.score for h in dense}
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        return [Hit(self.chunks[row[cid]], float(cos[cid]) if cid in cos else
                    float(self.index.reconstruct(row[cid]) @ q), rank) for rank, (cid, _) in enumerate(order)]

    def search(self, text: str, embedder: Embedder, k: int = 4, scope: Scope | None = None) -> list[Hit]:
        return self.search_vector(embedder.encode([text])[0], k, scope)

    def documents(self) -> dict[str, Chunk]:
        return {c.doc: c for c in self.chunks}


def check_embedder(manifest: dict, embedder: Embedder, root: Path) -> None:
    built = manifest["embedder"]
    if built["id"] != embedder.id or built["dim"] != embedder.dim or built["fingerprint"] != embedder.fingerprint:
        raise IndexMismatchError(
            f"index at {root} was built with embedder {built['id']!r} (dim {built['dim']}, fingerprint "
            f"{built['fingerprint']}) but the config uses {embedder.id!r} (dim {embedder.dim}, fingerprint "
            f"{embedder.fingerprint}); rebuild with `eterna index rebuild --index {root}`")


def write_generation(path: Path, chunks: list[Chunk], vectors: np.ndarray, manifest: dict) -> None:
    """Write one generation's files into `path` (a staging directory the caller renames into place)."""
    path.mkdir(parents=True)
    index = faiss.IndexFlatIP(vectors.shape[1])
    if len(chunks):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    faiss.write_index(index, str(path / "index.faiss"))
    np.save(path / "vectors.npy", vectors)
    if len(chunks):  # the lexical index of the same chunks, same ids (row i = chunk i), same generation
        from retrieval.lexical import LexicalIndex

        LexicalIndex.build([f"{c.title} {c.text}" for c in chunks]).save(path / "bm25")
    with (path / "chunks.jsonl").open("w", encoding="utf-8") as f:
        for c in chunks:
            f.write(json.dumps(asdict(c), ensure_ascii=False) + "\n")
    manifest = {**manifest, "format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "faiss": {"type": "IndexFlatIP", "version": faiss.__version__, "ntotal": index.ntotal}}
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True) + "\n",
                                        encoding="utf-8")
