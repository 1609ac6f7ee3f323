"""Training-data formats: reading rows (JSONL, or one JSON array per file) and normalising each format's rows.

Two internal forms come out:
- a chat example: a list of {role, content}, an optional system turn first, then user/assistant turns that
  alternate and end with the assistant's reply (the part the loss falls on);
- a preference pair: {prompt, chosen, rejected} strings, plus `system` and `history` (earlier chat turns) when the
  source has them.

A format is one `FORMATS.add(Format(...))`: its name, kind (chat | preference), the keys that identify it, and a
parser returning (normalised row or None, issues). Parsers collect every issue of a row rather than stop at the
first, so the gate (tuning/gate.py) can report them all. `detect_format` picks, for a file's first JSON object,
the format whose identifying keys it has; the most specific (most keys) wins.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from retrieval.errors import CorpusError
from retrieval.registry import Registry

ROLES = ("system", "user", "assistant")
KINDS = ("chat", "preference")
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}


@dataclass(frozen=True)
class Issue:
    """One problem in one row: a stable code (see tuning.gate.SEVERITY) and a message naming the field."""

    code: str
    message: str


@dataclass(frozen=True)
class Format:
    name: str
    kind: str  # "chat" | "preference"
    keys: frozenset[str]  # the keys that identify the format (and that every row needs)
    parse: Callable[[dict], tuple[object | None, list[Issue]]]


FORMATS: Registry[Format] = Registry("data format")


def read_rows(path: Path) -> Iterator[tuple[int, object]]:
    """(line, JSON value) per row; a JSON array file yields its elements with the line each starts on.

    An unparsable JSONL line yields (line, Issue); an unparsable array file yields one Issue and stops there."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: file not found; pass an existing JSONL or JSON file")
    text = path.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("["):
        yield from _array_rows(text)
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as e:
            yield lineno, Issue("invalid_json", f"invalid JSON ({e.msg} at column {e.colno}); "
                                                "each line must be one JSON object")


def _array_rows(text: str) -> Iterator[tuple[int, object]]:
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    n = len(text)

    def skip(p: int) -> int:
        while p < n and text[p] in " \t\r\n":
            p += 1
        return p

    pos = skip(pos)
    if pos < n and text[pos] == "]":
        return
    while True:
        line = text.count("\n", 0, pos) + 1
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            yield e.lineno, Issue("invalid_json", f"invalid JSON ({e.msg} at column {e.colno}); the rest of "
                                                  "the array is unreadable")
            return
        yield line, obj
        pos = skip(pos)
        if pos < n and text[pos] == ",":
            pos = skip(pos + 1)
            continue
        if pos < n and text[pos] == "]" and not text[pos + 1:].strip():
            return
        yield text.count("\n", 0, pos) + 1, Issue("invalid_json", "invalid JSON (expected ',' or a final ']' "
                                                                  "after an array element)")
        return


def detect_format(obj: dict, kind: str | None = None) -> Format | None:
    """The format whose identifying keys `obj` has (most specific first), optionally of one kind only."""
    fits = [f for f in FORMATS.values() if f.keys <= set(obj) and kind in (None, f.kind)]
    fits.sort(key=lambda f: -len(f.keys))
    if len(fits) > 1 and len(fits[0].keys) == len(fits[1].keys):
        return None  # ambiguous: the caller asks for --format
    return fits[0] if fits else None


def parse_file(path: Path, kind: str | None = None, fmt: str | None = None
               ) -> Iterator[tuple[int, str | None, object | None, list[Issue]]]:
    """(line, format name, normalised row or None, issues) per row. The format is `fmt`, or detected from the
    file's first JSON object; a file of another kind, or of no known format, yields one issue and stops."""
    forced = FORMATS.lookup(fmt, "--format: ") if fmt else None
    if forced is not None and kind is not None and forced.kind != kind:
        raise CorpusError(f"{path}: format {fmt!r} holds {forced.kind} data, but {kind} data is needed here; "
                          "pass a format of that kind")
    found = forced
    for line, obj in read_rows(path):
        if isinstance(obj, Issue):
            yield line, None, None, [obj]
            continue
        if not isinstance(obj, dict):
            yield line, None, None, [Issue("not_object", f"expected a JSON object, got {type(obj).__name__}")]
            continue
        if found is None:
            found = detect_format(obj)
            if found is None:
                yield line, None, None, [Issue("unknown_format", f"no known format has the keys "
                                                                 f"{', '.join(sorted(obj)) or '(none)'} (or more "
                                                                 f"than one has); known: {describe_formats()}; "
                                                                 "force one with --format NAME")]
                return
            if kind is not None and found.kind != kind:
                yield line, found.name, None, [Issue("wrong_kind", f"this is {found.kind} data (format "
                                                                   f"{found.name}); {kind} data is needed here")]
                return
        missing = sorted(found.keys - set(obj))
        if missing:
            yield line, found.name, None, [Issue("missing_field", f"missing field(s) {', '.join(missing)} "
                                                                  f"(format {found.name})")]
            continue
        value, issues = found.parse(obj)
        yield line, found.name, value, issues


def describe_formats() -> str:
    return "; ".join(f"{f.name} ({f.kind}: {', '.join(sorted(f.keys))})" for f in FORMATS.values())


# --- shared checks ------------------------------------------------------------------------------------------

def _text(value: object, label: str, issues: list[Issue], *, empty_ok: bool = False) -> str | None:
    if not isinstance(value, str):
        issues.append(Issue("bad_field", f"{label} must be a string, got {type(value).__name__}"))
        return None
    if not empty_ok and not value.strip():
        issues.append(Issue("empty_turn", f"{label} must be a non-empty string"))
    return value


def check_turns(messages: list[dict], label: str, issues: list[Issue], last: str = "assistant") -> None:
    """Roles known, system only first, user/assistant alternating from the user, ending with `last`."""
    for i, m in enumerate(messages):
        if m["role"] not in ROLES:
            issues.append(Issue("bad_role", f"{label}[{i}].role {m['role']!r} is not one of {', '.join(ROLES)}"))
    if any(m["role"] == "system" for m in messages[1:]):
        issues.append(Issue("turn_order", "a system message may only come first"))
    turns = [m for m in messages if m["role"] in ("user", "assistant")]
    for i, m in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            issues.append(Issue("turn_order", f"turn {i + 1} is {m['role']!r}, expected {expected!r} "
                                              "(turns alternate user/assistant)"))
            break
    if not turns or turns[-1]["role"] != last:
        issues.append(Issue("no_reply", "the last message must be the assistant's reply to learn" if last ==
                            "assistant" else "the conversation must end with the user turn that the replies answer"))


def _messages(items: object, label: str, role_key: str, text_key: str, role_map: dict | None,
              issues: list[Issue]) -> list[dict]:
    if not isinstance(items, list) or not items:
        issues.append(Issue("bad_field", f"{label!r} must be a non-empty list of {{{role_key}, {text_key}}} "
                                         "objects"))
        return []
    out = []
    for i, m in enumerate(items):
        if not isinstance(m, dict) or set(m) - {role_key, text_key} or role_key not in m or text_key not in m:
            issues.append(Issue("bad_field", f"{label}[{i}] must be an object with exactly {role_key!r} and "
                                             f"{text_key!r}"))
            continue
        role = m[role_key]
        if role_map is not None:
            if role not in role_map:
                issues.append(Issue("bad_role", f"{label}[{i}].{role_key} {role!r} is not one of "
                                                f"{', '.join(role_map)}"))
                continue
            role = role_map[role]
        content = _text(m[text_key], f"{label}[{i}].{text_key}", issues)
        out.append({"role": role, "content": content})
    return out


def _with_system(obj: dict, messages: list[dict], issues: list[Issue]) -> list[dict]:
    if "system" in obj and obj["system"] not in (None, ""):
        system = _text(obj["system"], "'system'", issues)
        return [{"role": "system", "content": system}, *messages]
    return messages


# --- the formats --------------------------------------------------------------------------------------------

def parse_messages(obj: dict) -> tuple[list[dict] | None, list[Issue]]:
    issues: list[Issue] = []
    messages = _messages(obj["messages"], "messages", "role", "content", None, issues)
    if messages and not issues:
        check_turns(messages, "messages", issues)
    return (None if issues else messages), issues


def parse_alpaca(obj: dict) -> tuple[list[dict] | None, list[Issue]]:
    """instruction (+ input after a blank line) is the user turn, output the reply; optional system, history."""
    issues: list[Issue] = []
    instruction = _text(obj["instruction"], "'instruction'", issues)
    extra = _text(obj.get("input", ""), "'input'", issues, empty_ok=True)
    output = _text(obj["output"], "'output'", issues)
    messages: list[dict] = []
    history = obj.get("history") or []
    if not isinstance(history, list) or not all(isinstance(h, list) and len(h) == 2 for h in history):
        issues.append(Issue("bad_field", "'history' must be a list of [user, assistant] pairs"))
        history = []
    for i, (q, a) in enumerate(history):
        messages += [{"role": "user", "content": _text(q, f"history[{i}][0]", issues)},
                     {"role": "assistant", "content": _text(a, f"history[{i}][1]", issues)}]
    user = f"{instruction}\n\n{extra}" if instruction and extra and extra.strip() else instruction
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    messages = _with_system(obj, messages, issues)
    return (None if issues else messages), issues


def parse_sharegpt(obj: dict) -> tuple[list[dict] | None, list[Issue]]:
    issues: list[Issue] = []
    messages = _messages(obj["conversations"], "conversations", "from", "value", SHAREGPT_ROLES, issues)
    messages = _with_system(obj, messages, issues)
    if messages and not issues:
        check_turns(messages, "conversations", issues)
    return (None if issues else messages), issues


def parse_pairs(obj: dict) -> tuple[dict | None, list[Issue]]:
    issues: list[Issue] = []
    pair = {k: _text(obj[k], repr(k), issues) for k in ("prompt", "chosen", "rejected")}
    return _finish_pair(pair, issues)


def parse_sharegpt_pairs(obj: dict) -> tuple[dict | None, list[Issue]]:
    """LLaMA-Factory's layout: `conversations` ending with the human turn, `chosen`/`rejected` {from: gpt, value}."""
    issues: list[Issue] = []
    messages = _messages(obj["conversations"], "conversations", "from", "value", SHAREGPT_ROLES, issues)
    messages = _with_system(obj, messages, issues)
    if messages and not issues:
        check_turns(messages, "conversations", issues, last="user")
    pair: dict = {}
    for key in ("chosen", "rejected"):
        v = obj[key]
        if isinstance(v, dict):
            if v.get("from", "gpt") != "gpt":
                issues.append(Issue("bad_role", f"{key!r}.from {v.get('from')!r} must be 'gpt'"))
            v = v.get("value")
        pair[key] = _text(v, repr(key), issues)
    if issues:
        return None, issues
    system = [m["content"] for m in messages if m["role"] == "system"]
    turns = [m for m in messages if m["role"] != "system"]
    pair = {"prompt": turns[-1]["content"], **pair}
    if system:
        pair["system"] = system[0]
    if turns[:-1]:
        pair["history"] = turns[:-1]
    return _finish_pair(pair, issues)


def _finish_pair(pair: dict, issues: list[Issue]) -> tuple[dict | None, list[Issue]]:
    if not issues and pair["chosen"].strip() == pair["rejected"].strip():
        issues.append(Issue("identical_pair", "'chosen' and 'rejected' are identical"))
    return (None if issues else pair), issues


FORMATS.add("messages", Format("messages", "chat", frozenset({"messages"}), parse_messages))
FORMATS.add("alpaca", Format("alpaca", "chat", frozenset({"instruction", "output"}), parse_alpaca))
FORMATS.add("sharegpt", Format("sharegpt", "chat", frozenset({"conversations"}), parse_sharegpt))
FORMATS.add("pairs", Format("pairs", "preference", frozenset({"prompt", "chosen", "rejected"}), parse_pairs))
FORMATS.add("sharegpt-pairs", Format("sharegpt-pairs", "preference",
                                     frozenset({"conversations", "chosen", "rejected"}), parse_sharegpt_pairs))
