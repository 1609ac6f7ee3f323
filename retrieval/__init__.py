"""Eterna's knowledge layer: lore documents -> chunks -> embeddings -> FAISS index generations.

The rule the project is built on: RAG for facts, fine-tuning for form. This package owns the facts.
It is the bottom layer: it imports neither `tuning` nor `app`, and its `errors` and `fileio` modules are
shared by the other two packages.
"""

from retrieval.errors import EternaError
from retrieval.types import Chunk, Document, Hit, Scope

__all__ = ["Chunk", "Document", "EternaError", "Hit", "Scope"]
