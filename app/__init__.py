"""Eterna's game-facing layer: config, guard, router, prompt assembly, generation backends, the DialogueEngine API
and CLI.

`DialogueEngine` and `Reply` are imported on first use (PEP 562), so a command that needs neither (`eterna index
list`, `eterna doctor`'s first lines) does not pay for torch, FAISS and scikit-learn at import."""

__all__ = ["DialogueEngine", "Reply"]


def __getattr__(name: str):
    if name in __all__:
        from app import dialogue

        return getattr(dialogue, name)
    raise AttributeError(f"module 'app' has no attribute {name!r}")
