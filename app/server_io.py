"""What the server process needs beside its routes: server-sent event framing and parsing (`iter_sse`, for clients
and tests), and glibc's malloc arenas capped for a long-running process."""

from __future__ import annotations

import json
from collections.abc import Iterator


def _text(content: str | list | None) -> str:
    """An OpenAI message's text (a string, or content parts of type text)."""
    if isinstance(content, list):  # OpenAI content parts
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content or ""


def last_user(messages: list):
    """The request's last user message: the player's line (a 422 when there is none)."""
    from fastapi import HTTPException

    users = [m for m in messages if m.role == "user"]
    if not users:
        raise HTTPException(422, "messages has no user message; the last user message is the player's line")
    return users[-1]


def chat_chunk(cid: str, created: int, model: str, delta: dict, finish: str | None = None) -> str:
    """One OpenAI `chat.completion.chunk` as a server-sent `data:` line."""
    return "data: " + json.dumps({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                                  "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"


def chat_error(e: Exception) -> str:
    """An error inside an OpenAI stream, as a `data:` line."""
    return "data: " + json.dumps({"error": {"message": str(e), "type": "eterna_error"}}) + "\n\n"


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def iter_sse(lines: Iterator[str]) -> Iterator[tuple[str, dict]]:
    """Parse a server-sent event stream (for clients and tests): (event, data) pairs."""
    event, data = "message", []
    for line in lines:
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas for a long-running server process (what `MALLOC_ARENA_MAX=2` does), unless the
    environment sets MALLOC_ARENA_MAX itself. glibc gives threads their own arenas, up to 8 per core, and each
    keeps its high-water mark: under a soak, the server's anonymous memory crept while the worker threads took
    turns (0.32 MB/min after warm-up), and with two arenas it stays flat (see docs/serving.md). Returns whether it
    was applied (False off glibc)."""
    import ctypes
    import os

    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-8, arenas))  # M_ARENA_MAX
    except (OSError, AttributeError):
        return False
