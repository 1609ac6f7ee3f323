"""Index rebuilds: load -> chunk -> embed (reusing unchanged chunks' and sentences' vectors) -> new generation ->
swap CURRENT.

Cheap by design: a changed lore file re-embeds only its own changed chunks. Old generations are kept (the
newest `keep` of them, and always the one the live generation replaced when `keep` >= 2), so a bad rebuild can be
rolled back: `use_generation` (`eterna index rollback`) makes a kept one live again, under the same lock;
`list_generations` (`eterna index list`) shows them.

Crash-proof by design: rebuilds (and rollbacks) of one index hold `<root>/.rebuild.lock`, an flock that the kernel
drops when its holder dies, so a killed rebuild never blocks the next one; under the lock, leftovers of dead runs
(`.staging-*` and `.trash-*` folders, `.CURRENT.*.tmp` files) are removed. A generation becomes visible only by a
rename of a complete, fsynced, checksummed folder, and is deleted only after a rename out of sight, so every
visible generation is whole. A live generation that fails its checksums is never reused: the rebuild re-embeds.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np

from retrieval.chunking import CHUNK_RULES, chunk_document
from retrieval.corpus import MAX_DOC_BYTES, load_corpus
from retrieval.embeddings import Embedder
from retrieval.errors import EternaError, IndexBusyError, IndexMissingError
from retrieval.fileio import atomic_write_text, fsync_dir, fsync_tree, read_jsonl, sha256_file
from retrieval.index import IndexSpec, LoreIndex, _chunk_from_json, sentence_texts, write_generation
from retrieval.integrity import write_checksums
from retrieval.types import RebuildStats

LOCK_NAME = ".rebuild.lock"
LOCK_TIMEOUT = 600.0  # seconds a rebuild waits for another rebuild of the same index


@contextmanager
def rebuild_lock(root: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[Path]:
    """Hold the index's rebuild lock (an flock on `<root>/.rebuild.lock`: released by the kernel if the holder
    dies, so it is never stale). Concurrent rebuilds of one root run one after the other."""
    from filelock import FileLock, Timeout

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(root / LOCK_NAME, timeout=timeout)
    try:
        lock.acquire()
    except Timeout:
        raise IndexBusyError(f"{root / LOCK_NAME}: another rebuild or rollback of {root} has held the lock for "
                             f"{timeout} s; wait for it to finish, or pass a longer lock_timeout") from None
    try:
        yield root
    finally:
        lock.release()


def clean_leftovers(root: Path) -> list[str]:
    """Remove what dead rebuilds left behind. Only call under `rebuild_lock`: then no live rebuild owns any of it."""
    root, gens = Path(root), Path(root) / "generations"
    junk = [p for p in gens.iterdir() if p.name.startswith((".staging-", ".trash-"))] if gens.is_dir() else []
    junk += [p for p in root.glob(".CURRENT.*.tmp")]
    for p in junk:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return sorted(p.name for p in junk)


def _live(root: Path) -> tuple[Path, dict] | None:
    """(folder, manifest) of the live generation if it opens cleanly (checksums, counts, format); None for no index
    or a damaged one, which the rebuild then replaces without reusing anything from it."""
    try:
        lore = LoreIndex.open(root)
    except EternaError:
        return None
    return lore.path, lore.manifest


def _previous_vectors(gen: Path, dim: int) -> dict[str, np.ndarray]:
    """chunk hash -> vector from a generation (the caller checked it was built by the same embedder)."""
    try:
        vectors = np.load(gen / "vectors.npy", allow_pickle=False)
        hashes = [c["hash"] for _, c in read_jsonl(gen / "chunks.jsonl")]
    except Exception:  # any unreadable previous generation just means a full re-embed
        return {}
    if vectors.ndim != 2 or vectors.shape != (len(hashes), dim):
        return {}  # rows would not line up with chunks: reuse nothing
    return dict(zip(hashes, vectors))


def _previous_sentences(gen: Path, dim: int) -> dict[str, np.ndarray]:
    """sentence text ("title: sentence") -> vector from a generation that stored them (same embedder checked)."""
    try:
        vectors = np.load(gen / "sentences.npy", allow_pickle=False)
        texts, _ = sentence_texts([_chunk_from_json(c) for _, c in read_jsonl(gen / "chunks.jsonl")])
    except Exception:  # none stored, or unreadable: embed them
        return {}
    if vectors.ndim != 2 or vectors.shape != (len(texts), dim):
        return {}
    return dict(zip(texts, vectors))


def _sentence_vectors(chunks, embedder: Embedder,
                      previous: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """(S, dim) vectors of the chunks' sentences, their (S,) chunk rows, and how many were embedded anew."""
    texts, rows = sentence_texts(chunks)
    vectors = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    todo = [i for i, t in enumerate(texts) if t not in previous]
    for i, t in enumerate(texts):
        if t in previous:
            vectors[i] = previous[t]
    if todo:
        vectors[todo] = embedder.encode([texts[i] for i in todo])
    return vectors, np.asarray(rows, dtype=np.int32), len(todo)


def _generation_name(corpus_hash: str) -> str:
    """Sortable by creation time to the microsecond (rollback and pruning order by name), unique by the suffix."""
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now % 1 * 1e6):06d}"
    return f"{stamp}-{corpus_hash[:8]}-{uuid.uuid4().hex[:4]}"


def rebuild_index(corpus: Path, root: Path, embedder: Embedder, *, chunk_words: int = 120,
                  overlap_words: int = 25, keep: int = 3, force: bool = False, kinds: list[str] | None = None,
                  npc_ids: set[str] | None = None, max_doc_bytes: int = MAX_DOC_BYTES,
                  lock_timeout: float = LOCK_TIMEOUT, index_spec: IndexSpec | None = None) -> RebuildStats:
    """Build a new generation and make it live; with nothing changed (same files, embedder and chunking) the live
    generation is kept and reported as `unchanged`, unless force=True. `kinds` and `npc_ids` check the lore against
    the world's declared kinds and its cast, `max_doc_bytes` caps one file (see `load_corpus`). Waits at most
    `lock_timeout` seconds for another rebuild of the same index (IndexBusyError after that). `index_spec` chooses the
    FAISS index kind by size (exact up to a threshold, then a factory string)."""
    t0 = time.perf_counter()
    corpus, root = Path(corpus), Path(root)
    docs = load_corpus(corpus, kinds, npc_ids, max_doc_bytes=max_doc_bytes)  # every file valid before any write
    if keep < 1:
        raise ValueError("keep must be at least 1 (the live generation)")
    with rebuild_lock(root, lock_timeout):
        cleaned = clean_leftovers(root)
        stats = _rebuild_locked(docs, corpus, root, embedder, chunk_words, overlap_words, keep, force, t0,
                                index_spec or IndexSpec())
    stats.extra["cleaned"] = cleaned
    return stats


def _rebuild_locked(docs, corpus: Path, root: Path, embedder: Embedder, chunk_words: int, overlap_words: int,
                    keep: int, force: bool, t0: float, index_spec: IndexSpec) -> RebuildStats:
    doc_hashes = {d.id: sha256_file(Path(d.path))[:16] for d in docs}
    corpus_hash = hashlib.sha256(json.dumps(doc_hashes, sort_keys=True).encode()).hexdigest()[:16]
    embedder_info = {"id": embedder.id, "dim": embedder.dim, "fingerprint": embedder.fingerprint}
    # the chunker's rules are part of what a generation was built with: new rules, new chunks
    chunking = {"chunk_words": chunk_words, "overlap_words": overlap_words, "rules": CHUNK_RULES}
    live = _live(root)
    same_embedder = live is not None and live[1]["embedder"] == embedder_info
    has_lexical = live is not None and (live[0] / "bm25").is_dir() or (live is not None and not docs)
    # a generation from before BM25, or built with another index spec, is rebuilt (its vectors are reused)
    same_spec = live is not None and live[1].get("index_spec", asdict(IndexSpec())) == asdict(index_spec)
    if not force and same_embedder and (live[1].get("corpus") or {}).get("hash") == corpus_hash \
            and live[1].get("chunking") == chunking and has_lexical and same_spec:
        gen, n = live[0], live[1]["counts"]["chunks"]
        return RebuildStats(generation=gen.name, documents=len(docs), chunks=n, embedded=0, reused=n,
                            seconds=round(time.perf_counter() - t0, 3), path=str(gen), extra={"unchanged": True})
    chunks = [c for d in docs for c in chunk_document(d, chunk_words, overlap_words)]
    previous = _previous_vectors(live[0], embedder.dim) if same_embedder else {}
    todo = [i for i, c in enumerate(chunks) if c.hash not in previous]
    vectors = np.zeros((len(chunks), embedder.dim), dtype=np.float32)  # (N, dim)
    for i, c in enumerate(chunks):
        if c.hash in previous:
            vectors[i] = previous[c.hash]
    if todo:
        vectors[todo] = embedder.encode([chunks[i].embed_text() for i in todo])
    sentences, embedded_sentences = None, 0
    if index_spec.sentences:
        previous_s = _previous_sentences(live[0], embedder.dim) if same_embedder else {}
        svecs, srows, embedded_sentences = _sentence_vectors(chunks, embedder, previous_s)
        sentences = (svecs, srows)

    name = _generation_name(corpus_hash)
    gens = root / "generations"
    staging = gens / f".staging-{name}"
    manifest = {
        "built_by": "eterna index rebuild",
        "embedder": embedder_info,
        "corpus": {"path": str(corpus.resolve()), "hash": corpus_hash, "documents": doc_hashes},
        "chunking": chunking,
        "index_spec": asdict(index_spec),
        "counts": {"documents": len(docs), "chunks": len(chunks),
                   **({"sentences": len(sentences[1])} if sentences else {})},
    }
    try:
        write_generation(staging, chunks, vectors, manifest, index_spec, sentences)
        write_checksums(staging)
        fsync_tree(staging)
        staging.rename(gens / name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(gens)
    atomic_write_text(root / "CURRENT", name + "\n")
    _prune(gens, keep, live=name, previous=live[0].name if live is not None else None)
    return RebuildStats(generation=name, documents=len(docs), chunks=len(chunks), embedded=len(todo),
                        reused=len(chunks) - len(todo), seconds=round(time.perf_counter() - t0, 3),
                        path=str(gens / name), extra={"unchanged": False, "sentences_embedded": embedded_sentences})


def _prune(gens: Path, keep: int, live: str, previous: str | None = None) -> None:
    """Delete all but the newest `keep` generations (the live one always stays; so does the one it replaced, when
    keep >= 2). Each is first renamed to a hidden `.trash-*` name, so a crash mid-delete never leaves a visible
    half-generation; readers that were opening it re-read CURRENT (see `LoreIndex.open`)."""
    protect = {live} | ({previous} if previous and keep >= 2 else set())
    olds = sorted((p for p in gens.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in protect),
                  key=lambda p: p.name)
    for p in olds[: max(0, len(olds) - (keep - len(protect)))]:
        trash = gens / f".trash-{p.name}"
        try:
            p.rename(trash)
        except OSError:
            continue
        shutil.rmtree(trash, ignore_errors=True)


def list_generations(root: Path) -> list[dict]:
    """Complete generations, oldest first, each with its manifest summary and whether it is live."""
    root = Path(root)
    gens = root / "generations"
    live = (root / "CURRENT").read_text(encoding="utf-8").strip() if (root / "CURRENT").is_file() else None
    out = []
    for p in sorted(gens.iterdir()) if gens.is_dir() else []:
        if p.name.startswith(".") or not (p / "manifest.json").is_file():
            continue
        m = json.loads((p / "manifest.json").read_text(encoding="utf-8"))
        out.append({"generation": p.name, "live": p.name == live, "created": m.get("created"),
                    "documents": m["counts"]["documents"], "chunks": m["counts"]["chunks"],
                    "corpus_hash": m["corpus"]["hash"], "embedder": m["embedder"]["id"]})
    return out


def use_generation(root: Path, name: str | None = None, *, lock_timeout: float = LOCK_TIMEOUT) -> str:
    """Make `name` live (default: the generation before the live one). Returns the name made live."""
    gens = list_generations(root)
    if not gens:
        raise IndexMissingError(f"no index generations at {root}; build one with `eterna index rebuild`")
    if name is None:
        live = [i for i, g in enumerate(gens) if g["live"]]
        if not live or live[0] == 0:
            raise IndexMissingError(f"{root}: no earlier generation to roll back to")
        name = gens[live[0] - 1]["generation"]
    if name not in {g["generation"] for g in gens}:
        raise IndexMissingError(f"{root}: no generation {name!r}; `eterna index list` shows the kept ones")
    with rebuild_lock(root, lock_timeout):  # not under a rebuild that is about to replace CURRENT
        atomic_write_text(Path(root) / "CURRENT", name + "\n")
    return name
