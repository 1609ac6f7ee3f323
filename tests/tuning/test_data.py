import json

import pytest

from retrieval.errors import CorpusError
from tuning.data import load_chat_examples, load_preferences, to_prompt_completion


def _write(path, lines):
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def test_valid_chat_file_and_prompt_completion(style_file):
    examples = load_chat_examples(style_file)
    rows = to_prompt_completion(examples, "You are the Warden.")
    assert rows[0]["prompt"][0] == {"role": "system", "content": "You are the Warden."}
    assert rows[0]["completion"][0]["role"] == "assistant"


@pytest.mark.parametrize("bad, message", [
    ("{not json", ":2: invalid JSON"),
    (json.dumps({"text": "hi"}), ":2: missing field"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}]}), ":2: the last message must be the assistant"),
    (json.dumps({"messages": [{"role": "assistant", "content": "hi"}]}), ":2: turn 1 is 'assistant'"),
    (json.dumps({"messages": [{"role": "npc", "content": "hi"}]}), ":2: messages\\[0\\].role 'npc'"),
    (json.dumps({"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": "x"}]}),
     "content must be a non-empty string"),
])
def test_bad_chat_lines_name_file_and_line(tmp_path, bad, message):
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Halt."}]}
    path = _write(tmp_path / "s.jsonl", [good, bad])
    with pytest.raises(CorpusError, match=message) as e:
        load_chat_examples(path)
    assert str(path) in str(e.value)


def test_preferences_validation(tmp_path):
    ok = _write(tmp_path / "p.jsonl", [{"prompt": "hi", "chosen": "Halt.", "rejected": "Hello! As an AI..."}])
    assert len(load_preferences(ok)) == 1
    same = _write(tmp_path / "q.jsonl", [{"prompt": "hi", "chosen": "Halt.", "rejected": "Halt."}])
    with pytest.raises(CorpusError, match="q.jsonl:1: 'chosen' and 'rejected' are identical"):
        load_preferences(same)
