"""Eterna's game-facing layer: config, guard, router, prompt assembly, runtime, the DialogueEngine API and CLI."""

from app.dialogue import DialogueEngine, Reply

__all__ = ["DialogueEngine", "Reply"]
