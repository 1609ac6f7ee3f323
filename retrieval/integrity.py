"""What makes an index generation trustworthy: valid generation names, per-file checksums, readable files.

A rebuild writes `checksums.json` (size and sha256 of every other file of the generation) into the staging folder
before it is fsynced and renamed, so a reader can tell a truncated or bit-flipped file from a good one before any
parser (faiss, numpy, json, bm25s) sees it. A generation without `checksums.json` (built before this file existed)
is still read; its files are then only checked by parsing them.

Every failure here is an `IndexMismatchError` or `IndexMissingError` naming the file and the fix (rebuild, or roll
back to a kept generation); raw faiss/json/numpy exceptions never leave this module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from retrieval.errors import EternaError, IndexMismatchError, IndexMissingError
from retrieval.fileio import atomic_write_json, sha256_file

CHECKSUMS = "checksums.json"
# a generation folder name: what `rebuild_index` writes (timestamp-hash-random); never a path, never hidden
GENERATION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
T = TypeVar("T")


def fix_hint(root: Path) -> str:
    return (f"rebuild with `eterna index rebuild --index {root}` or make a kept generation live with "
            f"`eterna index rollback --index {root}` (`eterna index list` shows them)")


def check_generation_name(name: str, current: Path, root: Path) -> str:
    """The content of CURRENT must be one generation folder name: no path separators, no `..`, not hidden."""
    if not GENERATION_RE.match(name) or ".." in name:
        shown = name if len(name) <= 60 else name[:57] + "..."
        raise IndexMismatchError(f"{current}: {shown!r} is not a generation name (expected a folder name under "
                                 f"{root / 'generations'}); {fix_hint(root)}")
    return name


def write_checksums(gen: Path) -> dict:
    """Record size and sha256 of every file under `gen` (called on the staging folder, before fsync + rename)."""
    gen = Path(gen)
    files = {p.relative_to(gen).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
             for p in sorted(gen.rglob("*")) if p.is_file() and p.name != CHECKSUMS}
    atomic_write_json(gen / CHECKSUMS, {"algorithm": "sha256", "files": files})
    return files


def verify_checksums(gen: Path, root: Path) -> bool:
    """Check every recorded file of a generation; False if it has no checksums (an older generation)."""
    gen = Path(gen)
    path = gen / CHECKSUMS
    if not path.is_file():
        return False
    files = guarded(path, root, lambda: json.loads(path.read_text(encoding="utf-8"))["files"])
    if not isinstance(files, dict):
        raise IndexMismatchError(f"{path}: malformed (no 'files' mapping); {fix_hint(root)}")
    for rel, want in sorted(files.items()):
        p = gen / rel
        size = guarded(p, root, lambda: p.stat().st_size)  # a file that vanished: IndexMissingError
        if size != want.get("bytes"):
            raise IndexMismatchError(f"{p}: {size} bytes but {want.get('bytes')} were written (truncated or "
                                     f"overwritten); {fix_hint(root)}")
        if guarded(p, root, lambda: sha256_file(p)) != want.get("sha256"):
            raise IndexMismatchError(f"{p}: checksum mismatch (the file is corrupted); {fix_hint(root)}")
    return True


def guarded(path: Path, root: Path, read: Callable[[], T]) -> T:
    """Run a reader of one index file; anything it raises becomes an Eterna error naming the file and the fix."""
    try:
        return read()
    except EternaError:
        raise
    except FileNotFoundError:
        raise IndexMissingError(f"{path}: missing; {fix_hint(root)}") from None
    except Exception as e:  # json, faiss (RuntimeError), numpy (ValueError, UnpicklingError), bm25s, unicode
        detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise IndexMismatchError(f"{path}: unreadable or corrupted ({type(e).__name__}: {detail}); "
                                 f"{fix_hint(root)}") from None


def check_vectors(gen: Path, root: Path, rows: int, dim: int) -> None:
    """vectors.npy must be a complete (rows, dim) float32 array; read through a memory map (header + size only)."""
    path = Path(gen) / "vectors.npy"
    arr = guarded(path, root, lambda: np.load(path, mmap_mode="r", allow_pickle=False))
    if arr.dtype != np.float32 or arr.ndim != 2 or arr.shape[0] != rows or (rows and arr.shape[1] != dim):
        raise IndexMismatchError(f"{path}: shape {arr.shape} {arr.dtype}, expected ({rows}, {dim}) float32; "
                                 f"{fix_hint(root)}")


def check_manifest(manifest: object, path: Path, root: Path) -> dict:
    if not isinstance(manifest, dict) or not isinstance(manifest.get("embedder"), dict) \
            or not {"id", "dim", "fingerprint"} <= set(manifest["embedder"]):
        raise IndexMismatchError(f"{path}: malformed manifest (no embedder id/dim/fingerprint); {fix_hint(root)}")
    return manifest
