"""Index rebuilds: load -> chunk -> embed (reusing unchanged chunks' vectors) -> new generation -> swap CURRENT.

Cheap by design: a changed lore file re-embeds only its own changed chunks. Old generations are kept (the
newest `keep` of them) so a bad rebuild can be rolled back by editing CURRENT.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from dataclasses import asdict
from pathlib import Path

import numpy as np

from retrieval.chunking import chunk_document
from retrieval.corpus import load_corpus
from retrieval.embeddings import Embedder
from retrieval.errors import IndexMissingError
from retrieval.fileio import atomic_write_text, fsync_tree, sha256_file
from retrieval.index import FORMAT, IndexSpec, read_current, write_generation
from retrieval.types import RebuildStats


def _live(root: Path) -> tuple[Path, dict] | None:
    """(folder, manifest) of the live generation, if there is a readable one in this format."""
    try:
        gen = read_current(root)
        manifest = json.loads((gen / "manifest.json").read_text(encoding="utf-8"))
    except Exception:  # no index yet, or an unreadable one: a rebuild replaces it
        return None
    return (gen, manifest) if manifest.get("format") == FORMAT else None


def _previous_vectors(gen: Path) -> dict[str, np.ndarray]:
    """chunk hash -> vector from a generation (the caller checked it was built by the same embedder)."""
    try:
        vectors = np.load(gen / "vectors.npy")
        hashes = [json.loads(line)["hash"] for line in
                  (gen / "chunks.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    except Exception:  # any unreadable previous generation just means a full re-embed
        return {}
    return dict(zip(hashes, vectors))


def rebuild_index(corpus: Path, root: Path, embedder: Embedder, *, chunk_words: int = 120,
                  overlap_words: int = 25, keep: int = 3, force: bool = False, kinds: list[str] | None = None,
                  npc_ids: set[str] | None = None, index_spec: IndexSpec | None = None) -> RebuildStats:
    """Build a new generation and make it live; with nothing changed (same files, embedder and chunking) the live
    generation is kept and reported as `unchanged`, unless force=True. `kinds` and `npc_ids` check the lore against
    the world's declared kinds and its cast (see `load_corpus`)."""
    t0 = time.perf_counter()
    corpus, root = Path(corpus), Path(root)
    docs = load_corpus(corpus, kinds, npc_ids)  # validates every file before anything is written
    doc_hashes = {d.id: sha256_file(Path(d.path))[:16] for d in docs}
    corpus_hash = hashlib.sha256(json.dumps(doc_hashes, sort_keys=True).encode()).hexdigest()[:16]
    embedder_info = {"id": embedder.id, "dim": embedder.dim, "fingerprint": embedder.fingerprint}
    chunking = {"chunk_words": chunk_words, "overlap_words": overlap_words}
    index_spec = index_spec or IndexSpec()
    live = _live(root)
    same_embedder = live is not None and live[1]["embedder"] == embedder_info
    has_lexical = live is not None and (live[0] / "bm25").is_dir() or (live is not None and not docs)
    # a generation from before BM25, or built with another index spec, is rebuilt (its vectors are reused)
    same_spec = live is not None and live[1].get("index_spec", asdict(IndexSpec())) == asdict(index_spec)
    if not force and same_embedder and live[1]["corpus"]["hash"] == corpus_hash and live[1]["chunking"] == chunking \
            and has_lexical and same_spec:
        gen, n = live[0], live[1]["counts"]["chunks"]
        return RebuildStats(generation=gen.name, documents=len(docs), chunks=n, embedded=0, reused=n,
                            seconds=round(time.perf_counter() - t0, 3), path=str(gen), extra={"unchanged": True})
    chunks = [c for d in docs for c in chunk_document(d, chunk_words, overlap_words)]
    previous = _previous_vectors(live[0]) if same_embedder else {}
    todo = [i for i, c in enumerate(chunks) if c.hash not in previous]
    vectors = np.zeros((len(chunks), embedder.dim), dtype=np.float32)  # (N, dim)
    for i, c in enumerate(chunks):
        if c.hash in previous:
            vectors[i] = previous[c.hash]
    if todo:
        vectors[todo] = embedder.encode([chunks[i].embed_text() for i in todo])

    name = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{corpus_hash[:8]}-{uuid.uuid4().hex[:4]}"
    gens = root / "generations"
    staging = gens / f".staging-{name}"
    manifest = {
        "built_by": "eterna index rebuild",
        "embedder": embedder_info,
        "corpus": {"path": str(corpus.resolve()), "hash": corpus_hash, "documents": doc_hashes},
        "chunking": chunking,
        "index_spec": asdict(index_spec),
        "counts": {"documents": len(docs), "chunks": len(chunks)},
    }
    try:
        write_generation(staging, chunks, vectors, manifest, index_spec)
        fsync_tree(staging)
        staging.rename(gens / name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    atomic_write_text(root / "CURRENT", name + "\n")
    _prune(gens, keep, live=name)
    return RebuildStats(generation=name, documents=len(docs), chunks=len(chunks), embedded=len(todo),
                        reused=len(chunks) - len(todo), seconds=round(time.perf_counter() - t0, 3),
                        path=str(gens / name), extra={"unchanged": False})


def _prune(gens: Path, keep: int, live: str) -> None:
    olds = sorted((p for p in gens.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != live),
                  key=lambda p: p.name)
    for p in olds[: max(0, len(olds) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)


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


def use_generation(root: Path, name: str | None = None) -> str:
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
    atomic_write_text(Path(root) / "CURRENT", name + "\n")
    return name
