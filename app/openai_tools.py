"""Actions in the OpenAI chat shape: a request's `tools` narrowing, `tool_calls` in a reply, `role: "tool"` results.

    names = allowed_tools(body.tools, body.tool_choice)   # None: every action the character declares
    calls = tool_calls(reply)                             # [{"id", "type": "function", "function": {...}}]
    events = tool_results(messages)                       # [(name, content)] after the last assistant message

A tool result is the game telling the character what happened when it acted; `app/action_turn.record_event`
stores it in the session's memory as an event.
"""

from __future__ import annotations

import json
import time
import uuid

from retrieval.errors import InputError


def _get(obj, key: str, default=None):
    """A field of a message as a dict or a pydantic model (whose extra fields are attributes too)."""
    return obj.get(key, default) if isinstance(obj, dict) else getattr(obj, key, default)


def allowed_tools(tools: list | None, tool_choice: object = None) -> frozenset[str] | None:
    """The action names a request allows: its `tools` (function names), none for `tool_choice: "none"`, one for a
    named function choice; None when the request says nothing (every declared action)."""
    if tool_choice == "none":
        return frozenset()
    names = None
    if tools is not None:
        if not isinstance(tools, list):
            raise InputError("tools must be a list of {\"type\": \"function\", \"function\": {\"name\": ...}}")
        names = set()
        for i, t in enumerate(tools):
            fn = t.get("function") if isinstance(t, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise InputError(f"tools.{i}: expected {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}")
            names.add(fn["name"])
    if isinstance(tool_choice, dict) and isinstance(tool_choice.get("function"), dict):
        chosen = {tool_choice["function"].get("name")}
        names = chosen if names is None else names & chosen
    return None if names is None else frozenset(names)


def tool_calls(actions: list[dict]) -> list[dict]:
    """A reply's actions as OpenAI `tool_calls` (arguments as a JSON string)."""
    return [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
             "function": {"name": a["name"], "arguments": json.dumps(a["args"], ensure_ascii=False)}}
            for a in actions]


def tool_results(messages: list) -> list[tuple[str, str]]:
    """(action name, content) of every `role: "tool"` message after the last assistant message: the game's results
    of the actions that message called (the name from its `tool_calls`, by `tool_call_id`)."""
    last = max((i for i, m in enumerate(messages) if _get(m, "role") == "assistant"), default=-1)
    names: dict[str, str] = {}
    if last >= 0:
        for call in _get(messages[last], "tool_calls") or []:
            fn = _get(call, "function") or {}
            names[_get(call, "id")] = _get(fn, "name") or ""
    out = []
    for m in messages[last + 1:]:
        if _get(m, "role") != "tool":
            continue
        content = _get(m, "content")
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        out.append((names.get(_get(m, "tool_call_id")) or _get(m, "name") or "action", str(content or "")))
    return out


def acknowledgement(model: str, spec, stream: bool):
    """The character's answer to a request that ends with the game's tool results: its voice markers alone (the
    action was already accepted in words), as a completion or, when streaming, as its server-sent events."""
    from fastapi.responses import StreamingResponse

    from app.grounding import in_voice

    text = " ".join(in_voice(spec, "").split())
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    if not stream:
        return {"id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}

    def events():
        for delta, finish in (({"role": "assistant", "content": text}, None), ({}, "stop")):
            yield "data: " + json.dumps({"id": cid, "object": "chat.completion.chunk", "created": created,
                                         "model": model, "choices": [{"index": 0, "delta": delta,
                                                                      "finish_reason": finish}]}) + "\n\n"
        yield "data: [DONE]\n\n"
    return StreamingResponse(events(), media_type="text/event-stream")
