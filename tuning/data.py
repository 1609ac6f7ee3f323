"""Training data formats and validation: chat examples (`messages`) and preference pairs.

Every error names the file and line. Chat examples teach form, so they hold user/assistant turns only;
the trainer prepends the character's persona as the system turn, exactly as the runtime does.
"""

from __future__ import annotations

from pathlib import Path

from retrieval.errors import CorpusError
from retrieval.fileio import read_jsonl, sha256_file

ROLES = ("system", "user", "assistant")


def _check_messages(path: Path, lineno: int, messages: object) -> list[dict]:
    where = f"{path}:{lineno}"
    if not isinstance(messages, list) or not messages:
        raise CorpusError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or set(m) - {"role", "content"} or "role" not in m or "content" not in m:
            raise CorpusError(f"{where}: messages[{i}] must be an object with exactly 'role' and 'content'")
        if m["role"] not in ROLES:
            raise CorpusError(f"{where}: messages[{i}].role {m['role']!r} is not one of {', '.join(ROLES)}")
        if not isinstance(m["content"], str) or not m["content"].strip():
            raise CorpusError(f"{where}: messages[{i}].content must be a non-empty string")
        out.append({"role": m["role"], "content": m["content"]})
    turns = [m for m in out if m["role"] != "system"]
    if any(m["role"] == "system" for m in out[1:]):
        raise CorpusError(f"{where}: a system message may only come first")
    for i, m in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            raise CorpusError(f"{where}: turn {i + 1} is {m['role']!r}, expected {expected!r} "
                              "(turns alternate user/assistant)")
    if not turns or turns[-1]["role"] != "assistant":
        raise CorpusError(f"{where}: the last message must be the assistant's reply to learn")
    return out


def load_chat_examples(path: Path) -> list[list[dict]]:
    examples = [_check_messages(Path(path), n, obj["messages"]) for n, obj in read_jsonl(path, ("messages",))]
    if not examples:
        raise CorpusError(f"{path}: no examples")
    return examples


def load_preferences(path: Path) -> list[dict]:
    pairs = []
    for n, obj in read_jsonl(path, ("prompt", "chosen", "rejected")):
        for key in ("prompt", "chosen", "rejected"):
            if not isinstance(obj[key], str) or not obj[key].strip():
                raise CorpusError(f"{path}:{n}: {key!r} must be a non-empty string")
        if obj["chosen"].strip() == obj["rejected"].strip():
            raise CorpusError(f"{path}:{n}: 'chosen' and 'rejected' are identical")
        pairs.append({k: obj[k] for k in ("prompt", "chosen", "rejected")})
    if not pairs:
        raise CorpusError(f"{path}: no preference pairs")
    return pairs


def to_prompt_completion(examples: list[list[dict]], system: str | None) -> list[dict]:
    """Conversational prompt/completion rows: loss falls on the final assistant turn only."""
    rows = []
    for messages in examples:
        msgs = list(messages)
        if system and msgs[0]["role"] != "system":
            msgs = [{"role": "system", "content": system}, *msgs]
        rows.append({"prompt": msgs[:-1], "completion": [msgs[-1]]})
    return rows


def data_fingerprint(path: Path) -> str:
    return sha256_file(path)[:16]
