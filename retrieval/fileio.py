"""Durable file helpers shared by all packages: atomic writes, JSONL with line-numbered errors, fingerprints.

Bad input never loses data: every artifact is written to a temporary sibling, fsynced, then renamed.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from retrieval.errors import CorpusError


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under root (before it is renamed into place)."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def replace_dir(staged: Path, final: Path) -> None:
    """Move a fully written directory into place; an existing one is swapped out, then removed."""
    fsync_tree(staged)
    final.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(staged, final)
    fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staging(out_dir: Path, kind: str) -> Iterator[Path]:
    """A scratch folder `.<name>.<kind>-*` next to out_dir (same filesystem, so the final rename is atomic), removed
    afterwards: whatever the block did not move into place (with `replace_dir`) is gone on any exit."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.{kind}-", dir=out_dir.parent))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def read_jsonl(path: Path, required: tuple[str, ...] = (), *, skip_bad: bool = False) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, object) for each non-blank line; malformed lines raise CorpusError with file:line.

    A `.gz` file is read through gzip. `skip_bad`: a line that is not a whole JSON object with the required fields
    is passed over instead (a file a crashed writer may have left with a torn last line)."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                obj, problem = None, f"invalid JSON ({e.msg} at column {e.colno}); each line must be one JSON object"
            else:
                problem = None if isinstance(obj, dict) else f"expected a JSON object, got {type(obj).__name__}"
            if problem is None and (missing := [k for k in required if k not in obj]):
                problem = f"missing field(s) {', '.join(missing)}"
            if problem is None:
                yield lineno, obj
            elif not skip_bad:
                raise CorpusError(f"{path}:{lineno}: {problem}")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint_dir(root: Path, ignore_json_keys: frozenset[str] = frozenset()) -> str:
    """A cheap, stable fingerprint of a model folder: small files in full, big files by size + head + tail.

    Good enough to tell two checkpoints apart (a different training run changes the head bytes) without
    reading hundreds of megabytes on every start. `ignore_json_keys`: top-level keys of small JSON files that say how
    a file was written rather than what the model is (a package version, a loader flag); they are left out.
    """
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name.startswith(".") or p.name.startswith("eterna_"):  # our own manifests
            continue
        rel = p.relative_to(root).as_posix()
        size = p.stat().st_size
        if size <= 4 << 20 and ignore_json_keys and p.suffix == ".json":
            data = p.read_bytes()
            try:
                obj = json.loads(data)
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                data = json.dumps({k: v for k, v in obj.items() if k not in ignore_json_keys},
                                  sort_keys=True).encode()
            h.update(f"{rel}\0{len(data)}\0".encode())
            h.update(data)
            continue
        h.update(f"{rel}\0{size}\0".encode())
        with p.open("rb") as f:
            if size <= 4 << 20:
                h.update(f.read())
            else:
                h.update(f.read(1 << 20))
                f.seek(size - (1 << 20))
                h.update(f.read())
    return h.hexdigest()[:16]
