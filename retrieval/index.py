"""The on-disk FAISS index: immutable generations, an atomic CURRENT pointer, and a manifest per generation.

Layout of an index directory:

    index/
      CURRENT                    name of the live generation (replaced atomically)
      generations/<name>/
        manifest.json            format, embedder id/dim/fingerprint, corpus hashes, chunking config, counts
        index.faiss              exact inner-product index over L2-normalised vectors (cosine)
        vectors.npy              (N, dim) float32 - kept for incremental rebuilds
        sentences.npy            (S, dim) float16 - one vector per sentence of the chunks (IndexSpec.sentences)
        sentence_rows.npy        (S,) int32 - the chunk row of each sentence
        chunks.jsonl             chunk records in FAISS id order

Readers open CURRENT once, so a rebuild running next to a live game never exposes a half-written index.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from retrieval.embeddings import Embedder
from retrieval.errors import IndexMismatchError, IndexMissingError
from retrieval.gates import compile_gate
from retrieval.integrity import (
    check_generation_name,
    check_manifest,
    check_vectors,
    fix_hint,
    guarded,
    verify_checksums,
)
from retrieval.text import split_sentences
from retrieval.types import Chunk, Hit, Scope

FORMAT = "eterna-index/1"
SMALL_SUBSET = 4096  # a filter allowing at most this many rows searches them exactly (ANN indexes)
_OPEN_ATTEMPTS = 100  # CURRENT re-read while it keeps naming another generation that vanished while being opened (a
# reader starved on a loaded machine may see several rebuilds swap and prune; a name read twice and still missing is an
# error at once)


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
    """A loaded generation: FAISS index + chunk records + manifest. Dense search is exact below the size set at
    build time and approximate (IVF or HNSW, a FAISS factory string) above it; scope and chapter filters are applied
    inside the search either way (a FAISS ID selector, or exact search over the allowed rows when they are few).
    It stores and searches the primitives (vectors, BM25 over the same rows); the retrievers that combine them are
    retrieval/retriever.py's."""

    def __init__(self, path: Path, manifest: dict, chunks: list[Chunk], index: faiss.Index | None, lexical=None,
                 vectors: np.ndarray | None = None, sentences: tuple[np.ndarray, np.ndarray] | None = None):
        self.path = Path(path)
        self.manifest = manifest
        self.chunks = chunks
        self.index = index
        self.lexical = lexical  # LexicalIndex of the same chunks, or None (a generation built before BM25)
        self.vectors = vectors  # (N, dim) float32, memory-mapped: exact search over small filtered subsets
        # (S, dim) float16 sentence vectors and their (S,) chunk rows, or None (a generation built without them)
        self.sentences = sentences
        self._sentence_cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.exact = isinstance(index, faiss.IndexFlat)
        self.row = {c.id: i for i, c in enumerate(chunks)}
        # filter columns, so a Scope becomes a boolean mask with a few numpy operations instead of a Python loop
        self._chapter = np.array([c.chapter for c in chunks], dtype=np.int64)  # (N,)
        kinds = sorted({c.kind for c in chunks})
        self._kind_code = {k: i for i, k in enumerate(kinds)}
        self._kind = np.array([self._kind_code[c.kind] for c in chunks], dtype=np.int64)  # (N,)
        self._scoped = np.array([c.npc_scope is not None for c in chunks], dtype=bool)  # (N,)
        # state gates: each distinct `requires` compiled once, with the rows it gates
        self._gated = {compile_gate(r): np.array([i for i, c in enumerate(chunks) if c.requires == r])
                       for r in sorted({c.requires for c in chunks if c.requires is not None})}
        self._masks: dict[Scope, tuple[np.ndarray, np.ndarray, object]] = {}
        self._lock = threading.Lock()

    def _filter(self, scope: Scope | None) -> tuple[np.ndarray, np.ndarray, object] | None:
        """(mask (N,) bool, allowed row ids, FAISS selector) of a scope, cached per scope; None when it filters
        nothing."""
        gates = scope is not None and scope.state is not None and bool(self._gated)
        if scope is None or (scope.npc is None and scope.chapter is None and not gates):
            return None
        cached = self._masks.get(scope)
        if cached is not None:
            return cached
        mask = np.ones(len(self.chunks), dtype=bool)
        if scope.chapter is not None:
            mask &= self._chapter <= scope.chapter
        if scope.npc is not None:
            named = np.array([c.npc_scope is not None and scope.npc in c.npc_scope for c in self.chunks],
                             dtype=bool) if self._scoped.any() else np.zeros(len(self.chunks), dtype=bool)
            if scope.kinds is None:
                open_ = ~self._scoped
            else:
                codes = [self._kind_code[k] for k in scope.kinds if k in self._kind_code]
                open_ = ~self._scoped & np.isin(self._kind, codes)
            mask &= named | open_
        if gates:  # a document whose gate is shut in this state is out, as a later chapter is
            for gate, rows in self._gated.items():
                if not gate.test(scope.state):
                    mask[rows] = False
        allowed = np.flatnonzero(mask).astype(np.int64)
        bitmap = np.packbits(mask, bitorder="little")
        sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bitmap))
        sel.bitmap_ref = bitmap  # keep the bits alive as long as the selector
        out = (mask, allowed, sel)
        with self._lock:
            if len(self._masks) > 256:  # scopes are few (NPC x chapter x the states in play); bound it
                self._masks.clear()
            self._masks[scope] = out
        return out

    def allowed_mask(self, scope: Scope | None) -> np.ndarray | None:
        f = self._filter(scope)
        return None if f is None else f[0]

    @classmethod
    def in_memory(cls, name: str, chunks: list[Chunk], vectors: np.ndarray | None = None,
                  lexical=None, sentences: tuple[np.ndarray, np.ndarray] | None = None) -> LoreIndex:
        """An index that is no generation on disk (the evaluation's BEIR corpora): exact dense search over
        `vectors` (N, dim) float32 normalised, BM25 over `lexical`, sentence vectors and their rows in
        `sentences`; any may be None (that search is missing)."""
        index = None
        if vectors is not None:
            index = faiss.IndexFlatIP(vectors.shape[1])
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return cls(Path(name), {"format": FORMAT}, chunks, index, lexical, vectors, sentences)

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
        vectors = guarded(gen / "vectors.npy", root, lambda: np.load(gen / "vectors.npy", mmap_mode="r")) \
            if (gen / "vectors.npy").is_file() else None
        sentences = cls._open_sentences(gen, root, len(chunks), index.d)
        if not (gen / "manifest.json").is_file():  # pruned while we read it: the probes above may have missed files
            raise IndexMissingError(f"{gen}: removed while it was being opened; {fix_hint(root)}")
        return cls(gen, manifest, chunks, index, lexical, vectors, sentences)

    @staticmethod
    def _open_sentences(gen: Path, root: Path, n: int, dim: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The sentence vectors and rows, memory-mapped, checked against the chunks; None when not built."""
        vec_path, row_path = gen / "sentences.npy", gen / "sentence_rows.npy"
        if not vec_path.is_file() and not row_path.is_file():
            return None
        vecs = guarded(vec_path, root, lambda: np.load(vec_path, mmap_mode="r", allow_pickle=False))
        rows = guarded(row_path, root, lambda: np.load(row_path, allow_pickle=False))
        if vecs.ndim != 2 or rows.ndim != 1 or vecs.shape[0] != rows.shape[0] or (len(rows) and (
                vecs.shape[1] != dim or int(rows.min()) < 0 or int(rows.max()) >= n
                or bool(np.any(np.diff(rows) < 0)))):
            raise IndexMismatchError(f"{vec_path}: shape {vecs.shape} with {rows.shape[0]} rows does not match "
                                     f"{n} chunks of dim {dim}; {fix_hint(root)}")
        return vecs, rows

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def search_vector(self, query: np.ndarray, k: int, scope: Scope | None = None) -> list[Hit]:
        """query: (dim,) float32 normalised. Filters by NPC scope and chapter inside the search."""
        if self.index is None:
            raise IndexMissingError(f"{self.path}: no dense vectors to search (this index holds BM25 only)")
        if k <= 0 or not self.chunks:
            return []
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)  # (1, dim)
        f = self._filter(scope)
        if f is not None:
            _mask, allowed, sel = f
            if allowed.size == 0:
                return []
            k = min(k, int(allowed.size))
            if not self.exact and self.vectors is not None and allowed.size <= SMALL_SUBSET:
                return self._exact_subset(q[0], allowed, k)
        k = min(k, len(self.chunks))
        params = self._params(f[2] if f is not None else None)
        scores, ids = self.index.search(q, k, params=params)  # (1, k), (1, k)
        hits = [Hit(self.chunks[int(i)], float(s), rank) for rank, (s, i) in enumerate(zip(scores[0], ids[0]))
                if i >= 0]
        if len(hits) < k and not self.exact and self.vectors is not None:  # an ANN probe found too few allowed
            return self._exact_subset(q[0], f[1] if f is not None else np.arange(len(self.chunks)), k)
        return hits

    def search_dense(self, query: np.ndarray, k: int, scope: Scope | None = None,
                     sentence_weight: float = 0.0) -> list[Hit]:
        """Dense search where a chunk may also rank by its best sentence (small-to-big): a chunk's score is the
        larger of its cosine and `sentence_weight` * its best sentence's cosine + (1 - weight) * its cosine, over
        the top k by chunk and the top k by sentence under the same filters. A long chunk about something else
        that holds the one answering sentence ("... cast for her when she founded the guild") then ranks
        higher. Hits carry that score (rank order); their cosine is `cosine(row, query)`. Without sentence vectors
        or at weight 0 this is `search_vector`."""
        if not sentence_weight or self.sentences is None or k <= 0 or not self.chunks:
            return self.search_vector(query, k, scope)
        hits = self.search_vector(query, k, scope)
        vecs, present, starts = self._sentence_arrays()
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        best = np.full(len(self.chunks), -np.inf, dtype=np.float32)  # (N,) each chunk's best sentence cosine
        if len(present):
            if vecs.dtype == np.float32:
                scores = vecs @ q  # (S,)
            else:  # too many to hold as float32: converted slice by slice (about 1 ms per 1,000 sentences)
                scores = np.empty(len(vecs), dtype=np.float32)
                for start in range(0, len(vecs), 65536):
                    scores[start:start + 65536] = np.asarray(vecs[start:start + 65536], dtype=np.float32) @ q
            best[present] = np.maximum.reduceat(scores, starts)
        mask = self.allowed_mask(scope)
        if mask is not None:
            best[~mask] = -np.inf
        top = np.argsort(-best, kind="stable")[:k]
        cos = {self.row[h.chunk.id]: h.score for h in hits}
        for r in (int(r) for r in top if np.isfinite(best[r])):
            cos.setdefault(r, self.cosine(r, q))
        mixed = {r: max(c, sentence_weight * float(best[r]) + (1 - sentence_weight) * c) if np.isfinite(best[r])
                 else c for r, c in cos.items()}
        order = sorted(mixed, key=lambda r: (-mixed[r], r))[:k]
        return [Hit(self.chunks[r], mixed[r], rank) for rank, r in enumerate(order)]

    def _sentence_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sentence vectors as searched, the chunk rows that have sentences, where each one's run starts), made
        once: the vectors as float32 in memory up to SENTENCES_IN_MEMORY values (numpy converts float16 slowly),
        else the float16 memory map."""
        if self._sentence_cache is None:
            vecs, rows = self.sentences
            present, starts = np.unique(rows, return_index=True)  # rows are sorted: one run per chunk
            if vecs.size <= SENTENCES_IN_MEMORY:
                vecs = np.asarray(vecs, dtype=np.float32)
            self._sentence_cache = (vecs, present, starts)
        return self._sentence_cache

    def _params(self, sel):
        search = self.manifest.get("faiss", {}).get("search", {})
        if isinstance(self.index, faiss.IndexIVF) or "nprobe" in search:
            return faiss.SearchParametersIVF(sel=sel, nprobe=int(search.get("nprobe", 16)))
        if isinstance(self.index, faiss.IndexHNSW):
            return faiss.SearchParametersHNSW(sel=sel, efSearch=int(search.get("efSearch", 64)))
        return faiss.SearchParameters(sel=sel) if sel is not None else None

    def _exact_subset(self, q: np.ndarray, rows: np.ndarray, k: int) -> list[Hit]:
        scores = np.asarray(self.vectors[rows]) @ q  # (n,)
        top = np.argpartition(-scores, k - 1)[:k] if k < scores.size else np.arange(scores.size)
        top = top[np.argsort(-scores[top], kind="stable")]
        return [Hit(self.chunks[int(rows[i])], float(scores[i]), rank) for rank, i in enumerate(top)]

    def cosine(self, row: int, query: np.ndarray) -> float:
        vec = self.vectors[row] if self.vectors is not None else self.index.reconstruct(row)
        return float(np.asarray(vec, dtype=np.float32) @ np.asarray(query, dtype=np.float32).reshape(-1))

    def search_lexical(self, text: str, k: int, scope: Scope | None = None) -> list[tuple[int, float]]:
        """BM25 top-k (row, score) under the same filters; [] without a lexical index."""
        if self.lexical is None or k <= 0:
            return []
        return self.lexical.search(text, k, self.allowed_mask(scope))

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


@dataclass(frozen=True)
class IndexSpec:
    """Which FAISS index a generation gets: exact (IndexFlatIP) up to `exact_max` chunks, above it `factory`
    (a FAISS factory string; `{nlist}` becomes 4 * sqrt(N)), searched with `nprobe` (IVF; None: nlist / 32, at least
    16, so recall holds as the index grows) or `ef_search` (HNSW). `sentences`: the generation also stores a vector
    for each sentence of each chunk (`sentence_texts`), which dense search can mix into a chunk's score
    (`LoreIndex.search_dense`)."""

    exact_max: int = 100_000
    factory: str = "IVF{nlist},Flat"
    nprobe: int | None = None
    ef_search: int = 64
    sentences: bool = True


SENTENCES_IN_MEMORY = 64_000_000  # sentence vector values held as float32 (256 MB; about 170,000 sentences)
SENTENCE_MIN_WORDS = 3  # shorter pieces ("Yes, sir.") are no evidence (app.grounding keeps the same sentences)


def sentence_texts(chunks: list[Chunk]) -> tuple[list[str], list[int]]:
    """What a generation embeds per sentence: "title: sentence" for each sentence of three words or more of each
    chunk (the code base's one splitter), and the row of the chunk each comes from. The evidence selection embeds
    the same strings, so a sentence's retrieval and selection cosines agree."""
    texts, rows = [], []
    for row, c in enumerate(chunks):
        for s in split_sentences(c.text, min_words=SENTENCE_MIN_WORDS):
            texts.append(f"{c.title}: {s}")
            rows.append(row)
    return texts, rows


def build_faiss(vectors: np.ndarray, spec: IndexSpec) -> tuple[faiss.Index, dict]:
    """The index over `vectors` (N, dim) float32 normalised, and its manifest entry."""
    n, dim = vectors.shape
    if n <= spec.exact_max:
        index = faiss.IndexFlatIP(dim)
        info = {"type": "IndexFlatIP", "factory": "Flat"}
    else:
        factory = spec.factory.replace("{nlist}", str(max(1, int(4 * np.sqrt(n)))))
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            rng = np.random.default_rng(0)
            sample = vectors[np.sort(rng.choice(n, size=min(n, 256 * 1024), replace=False))]
            index.train(np.ascontiguousarray(sample, dtype=np.float32))
        if "IVF" in factory:
            nlist = faiss.extract_index_ivf(index).nlist
            search = {"nprobe": int(spec.nprobe or max(16, nlist // 32))}
        else:
            search = {"efSearch": spec.ef_search}
        info = {"type": type(index).__name__, "factory": factory, "search": search}
    for start in range(0, n, 65536):  # in slices: no second full copy of a large matrix
        index.add(np.ascontiguousarray(vectors[start:start + 65536], dtype=np.float32))
    return index, info


def write_generation(path: Path, chunks: list[Chunk], vectors: np.ndarray, manifest: dict,
                     spec: IndexSpec | None = None,
                     sentences: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Write one generation's files into `path` (a staging directory the caller renames into place). `sentences`:
    (S, dim) vectors of `sentence_texts(chunks)` and their (S,) chunk rows, stored as float16 (half the disk and
    memory; a cosine moves by about 1e-3)."""
    path.mkdir(parents=True)
    index, info = build_faiss(vectors, spec or IndexSpec())
    faiss.write_index(index, str(path / "index.faiss"))
    np.save(path / "vectors.npy", vectors)
    if sentences is not None:
        np.save(path / "sentences.npy", np.asarray(sentences[0], dtype=np.float16))
        np.save(path / "sentence_rows.npy", np.asarray(sentences[1], dtype=np.int32))
    if len(chunks):  # the lexical index of the same chunks, same ids (row i = chunk i), same generation
        from retrieval.lexical import LexicalIndex

        LexicalIndex.build([f"{c.title} {c.text}" for c in chunks]).save(path / "bm25")
    with (path / "chunks.jsonl").open("w", encoding="utf-8") as f:
        for c in chunks:
            row = asdict(c)
            if row["requires"] is None:  # ungated chunks keep the record older readers know
                del row["requires"]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    manifest = {**manifest, "format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "faiss": {**info, "version": faiss.__version__, "ntotal": index.ntotal}}
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True) + "\n",
                                        encoding="utf-8")
