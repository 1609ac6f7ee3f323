"""The data gate: formats detected and normalised, every problem reported with its line, over-long policies,
duplicates, the fact linter, the `validate --data` command and training that refuses bad data."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.cli import main
from retrieval.errors import ConfigError, CorpusError
from tests.conftest import REPO, write_project
from tests.fixtures_data import LORE
from tuning.data import load_chat_examples, load_preferences
from tuning.facts import FactLinter, extract_facts
from tuning.gate import gate_file
from tuning.sft import SFTRecipe, train_sft

SHARED = REPO.parent / "shared" / "data"  # the public data beside this checkout
ALPACA = SHARED / "instruction" / "alpaca_en_demo.json"
DPO = SHARED / "preference" / "dpo_en_demo.json"
LORE_BODIES = [textwrap.dedent(t).split("---", 2)[2] for t in LORE.values()]  # without the front matter
CHAT = [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Halt. Move along, reader."}]


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _msgs(user="Hello!", reply="Halt. Move along, reader."):
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]}


def test_each_format_is_detected_and_normalised(tmp_path):
    cases = {
        "messages": _jsonl(tmp_path / "m.jsonl", [{"messages": CHAT}]),
        "alpaca": _jsonl(tmp_path / "a.jsonl", [{"instruction": "Hello!", "input": "",
                                                  "output": "Halt. Move along, reader."}]),
        "sharegpt": _jsonl(tmp_path / "s.jsonl", [{"conversations": [
            {"from": "human", "value": "Hello!"}, {"from": "gpt", "value": "Halt. Move along, reader."}]}]),
    }
    for name, path in cases.items():
        report = gate_file(path)
        assert (report.format, report.kind, report.ok) == (name, "chat", True)
        assert report.items == [CHAT] == load_chat_examples(path)
    # Alpaca as a JSON array, input appended to the instruction, with a system turn
    arr = tmp_path / "a.json"
    arr.write_text(json.dumps([{"instruction": "Translate", "input": "hola", "output": "hello", "system": "Be brief."}],
                              indent=2))
    assert load_chat_examples(arr) == [[{"role": "system", "content": "Be brief."},
                                        {"role": "user", "content": "Translate\n\nhola"},
                                        {"role": "assistant", "content": "hello"}]]
    pairs = _jsonl(tmp_path / "p.jsonl", [{"prompt": "hi", "chosen": "Halt.", "rejected": "Hello! As an AI..."}])
    assert gate_file(pairs).format == "pairs" and load_preferences(pairs)[0]["chosen"] == "Halt."
    sg = tmp_path / "sp.json"
    sg.write_text(json.dumps([{"conversations": [
        {"from": "system", "value": "Be a guard."}, {"from": "human", "value": "hi"}, {"from": "gpt", "value": "Halt."},
        {"from": "human", "value": "why?"}], "chosen": {"from": "gpt", "value": "Rules."},
        "rejected": {"from": "gpt", "value": "As an AI, I..."}}]))
    report = gate_file(sg)
    assert (report.format, report.kind) == ("sharegpt-pairs", "preference")
    assert report.items == [{"prompt": "why?", "chosen": "Rules.", "rejected": "As an AI, I...",
                             "system": "Be a guard.", "history": [{"role": "user", "content": "hi"},
                                                                  {"role": "assistant", "content": "Halt."}]}]


def test_forcing_a_format_and_the_kind(tmp_path):
    path = _jsonl(tmp_path / "m.jsonl", [{"messages": CHAT}])
    report = gate_file(path, fmt="alpaca")
    assert [(p.line, p.code) for p in report.errors] == [(1, "missing_field"), (None, "no_rows")]
    with pytest.raises(ConfigError, match="unknown data format 'csv'; available: alpaca, messages, pairs"):
        gate_file(path, fmt="csv")
    wrong = gate_file(path, kind="preference")
    assert [p.code for p in wrong.errors] == ["wrong_kind", "no_rows"] and "chat data" in wrong.errors[0].message
    unknown = gate_file(_jsonl(tmp_path / "u.jsonl", [{"text": "hi"}]))
    assert unknown.errors[0].code == "unknown_format" and "--format" in unknown.errors[0].message


@pytest.mark.skipif(not (ALPACA.is_file() and DPO.is_file()), reason="the shared public data is not present")
def test_the_public_alpaca_and_sharegpt_preference_files():
    alpaca = gate_file(ALPACA, kind="chat")
    assert (alpaca.format, alpaca.rows, alpaca.valid, alpaca.ok) == ("alpaca", 999, 999, True)
    first = json.loads(ALPACA.read_text())[0]
    assert alpaca.items[0][-1]["content"] == first["output"] and alpaca.lines[:2] == [2, 7]  # where each starts
    dpo = gate_file(DPO, kind="preference")
    assert (dpo.format, dpo.rows, dpo.valid, dpo.ok) == ("sharegpt-pairs", 300, 300, True)
    assert any(p.get("history") for p in dpo.items) and all(isinstance(p["prompt"], str) for p in dpo.items)


def test_every_problem_is_reported_with_its_line(tmp_path):
    path = _jsonl(tmp_path / "style.jsonl", [
        _msgs(),                                                                       # 1 ok
        "{not json",                                                                   # 2
        {"text": "hi"},                                                                # 3 missing field
        _msgs(reply="   "),                                                            # 4 empty turn
        {"messages": [{"role": "npc", "content": "hi"}, {"role": "assistant", "content": "x"}]},  # 5 role
        {"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]},  # 6 order
        {"messages": [{"role": "user", "content": "hi"}]},                           # 7 no reply
        "[1, 2]",                                                                      # 8 not an object
        _msgs(),                                                                       # 9 duplicate of 1
        _msgs(user="  hello! ", reply="HALT.  Move along, reader."),                  # 10 near duplicate of 1
        _msgs(user="Nice hat.", reply="Regulation issue."),                            # 11 ok
    ])
    report = gate_file(path)
    found = {(p.line, p.code) for p in report.problems}
    assert {(2, "invalid_json"), (3, "missing_field"), (4, "empty_turn"), (5, "bad_role"), (6, "turn_order"),
            (7, "no_reply"), (8, "not_object"), (9, "duplicate"), (10, "near_duplicate")} <= found
    assert {p.line for p in report.errors} == {2, 3, 4, 5, 6, 7, 8}  # duplicates are warnings
    dup = next(p for p in report.problems if p.code == "duplicate")
    assert dup.first_line == 1 and "line 1" in dup.message
    assert report.lines == [1, 10, 11] and report.counts()["skipped"] == 8  # 7 bad rows + the exact duplicate
    data = json.loads(json.dumps(report.to_json()))
    assert data["ok"] is False and data["counts"]["errors"] == len(data["errors"]) >= 7
    text = report.render()
    assert text.startswith("FAIL") and f"{path}:4: messages[1].content must be a non-empty string" in text
    with pytest.raises(CorpusError, match=r"style.jsonl: .* error\(s\): line 2: invalid JSON.*--skip-bad-rows"):
        report.check()
    report.check(skip_bad_rows=True)  # rows remain: allowed


def test_preference_problems_and_array_lines(tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", [{"prompt": "hi", "chosen": "Halt.", "rejected": "Halt."},
                                         {"prompt": "hi", "chosen": "", "rejected": "Hello"},
                                         {"prompt": "hi", "chosen": "Halt.", "rejected": "Hello"}])
    assert [(p.line, p.code) for p in gate_file(path).errors] == [(1, "identical_pair"), (2, "empty_turn")]
    arr = tmp_path / "a.json"
    arr.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c",\n   "output": ""},\n'
                   '  {"instruction": "d", "output": "e"}\n]\n')
    report = gate_file(arr)
    assert report.lines == [2, 5] and [(p.line, p.code) for p in report.errors] == [(3, "empty_turn")]
    arr.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c" "output": "d"}\n]\n')
    assert [(p.line, p.code) for p in gate_file(arr).errors] == [(3, "invalid_json")]


@pytest.mark.parametrize("policy, kept, severity", [("drop", 1, "warning"), ("truncate", 2, "warning"),
                                                     ("error", 1, "error")])
def test_overlong_policies_with_the_real_tokenizer(tmp_path, smol_tokenizer_dir, policy, kept, severity):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smol_tokenizer_dir)
    path = _jsonl(tmp_path / "s.jsonl", [_msgs(), _msgs(reply="Halt. " * 80)])
    report = gate_file(path, max_length=64, overlong=policy, tokenizer=tok, system="You are a guard.")
    (p,) = report.problems
    assert (p.line, p.code, p.severity) == (2, "overlong", severity) and report.token_counter == "tokenizer"
    assert len(report.items) == kept and report.counts()["overlong"] == {"policy": policy, "max_length": 64,
                                                                         "count": 1}
    assert report.max_tokens > 64 and int(p.message.split()[0]) == report.max_tokens
    long = [{"role": "system", "content": "You are a guard."}, *_msgs(reply="Halt. " * 80)["messages"]]
    assert len(tok.apply_chat_template(long, tokenize=True)["input_ids"]) == report.max_tokens  # template + system
    assert report.ok is (policy != "error")


def test_overlong_estimate_without_a_tokenizer(tmp_path):
    path = _jsonl(tmp_path / "s.jsonl", [_msgs(), _msgs(reply="x" * 300)])
    report = gate_file(path, max_length=100)
    assert report.token_counter == "estimate" and [p.line for p in report.problems] == [2]
    assert report.max_tokens == 102 + 5 * 2  # ceil((6 + 300) chars / 3) + 5 per message


def test_fact_linter_flags_lore_names_and_numbers_only():
    terms = extract_facts(LORE_BODIES)
    assert {"Oriol Santpere", "Leonor de Quirós", "Valdescura", "Garden of Ink", "1387", "1612", "13"} <= terms
    assert not {"The", "Readers", "Books", "A", "Its", "October"} & terms  # sentence starts, months
    lint = FactLinter(LORE_BODIES, exempt=["You are the guard of Valdescura."])
    assert lint.find("Oriol Santpere built it in 1612, you know.") == ["Oriol Santpere", "1612"]
    assert lint.find("Halt. Move along, reader. Books return soon.") == []
    assert lint.find("Welcome to Valdescura.") == []  # the system prompt already says it
    assert lint.find("In 16120 or 1612a") == []  # whole words only


def test_gate_reports_world_facts_in_style_lines(tmp_path):
    path = _jsonl(tmp_path / "s.jsonl", [_msgs(), _msgs("Who built the clock?", "Oriol Santpere, in 1612. Halt."),
                                         _msgs("Where am I?", "Leonor de Quirós would know. Halt.")])
    report = gate_file(path, facts=FactLinter(LORE_BODIES))
    assert [(p.line, p.code, p.terms) for p in report.problems] == [
        (2, "world_fact", ("Oriol Santpere", "1612")), (3, "world_fact", ("Leonor de Quirós",))]
    assert report.ok and len(report.items) == 3  # a warning class by default
    strict = gate_file(path, facts=FactLinter(LORE_BODIES), fact_severity="error")
    assert not strict.ok and strict.lines == [1]


@pytest.fixture
def proj(tmp_path, tiny_llm_dir):
    return write_project(tmp_path / "proj", str(tiny_llm_dir))


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_validate_data_cli(capsys, proj, tmp_path):
    good = _jsonl(tmp_path / "good.jsonl", [_msgs(), _msgs("Hi", "At ease.")])
    rc, out, _ = _run(capsys, "--config", str(proj), "validate", "--data", str(good), "--json")
    report = json.loads(out)
    assert rc == 0 and report["ok"] and report["counts"]["kept"] == 2 and report["facts_checked"]
    assert report["counts"]["tokens"]["counter"] == "tokenizer"  # the project's model is a ready checkpoint
    bad = _jsonl(tmp_path / "bad.jsonl", [_msgs(), "{oops", _msgs("Who?", "Oriol Santpere. " * 40)])
    rc, out, err = _run(capsys, "--config", str(proj), "validate", "--data", str(bad), "--max-length", "64",
                        "--overlong", "error", "--json")
    report = json.loads(out)
    assert rc == 3 and not report["ok"] and "has 2 error(s)" in err
    assert [(e["line"], e["code"]) for e in report["errors"]] == [(2, "invalid_json"), (3, "overlong")]
    assert [(w["line"], w["terms"]) for w in report["warnings"]] == [(3, ["Oriol Santpere"])]
    rc, out, _ = _run(capsys, "--config", str(proj), "validate", "--data", str(bad), "--kind", "preference")
    assert rc == 3 and out.startswith("FAIL") and "this is chat data (format messages)" in out


def test_validate_data_as_a_process(tmp_path):
    bad = _jsonl(tmp_path / "bad.jsonl", [_msgs(), {"messages": []}])
    proc = subprocess.run([sys.executable, "-m", "app", "--config", str(tmp_path / "none.yaml"), "validate", "--data",
                           str(bad), "--json"], cwd=REPO, capture_output=True, text=True, timeout=300)
    report = json.loads(proc.stdout)
    assert proc.returncode == 3 and report["errors"][0]["line"] == 2 and not report["facts_checked"]
    assert "error(s)" in proc.stderr


def test_project_validate_reports_style_files(capsys, proj):
    style = proj.parent / "style"
    style.mkdir()
    _jsonl(style / "warden.jsonl", [_msgs(), _msgs(), _msgs("When?", "Founded in 1387. Halt.")])
    _jsonl(style / "archivist.jsonl", [_msgs(), {"messages": [{"role": "user", "content": "hi"}]}])
    proj.write_text(proj.read_text().replace("paths:\n", "paths:\n  style: style\n"))
    rc, out, err = _run(capsys, "--config", str(proj), "validate", "--json")
    report = json.loads(out)
    assert rc == 3 and report["style/warden"] == 3 and report["style/archivist"] == 1
    files = {Path(f["file"]).name: f for f in report["data"]["files"]}
    assert files["archivist.jsonl"]["errors"][0] == {"line": 2, "code": "no_reply",
                                                     "message": "the last message must be the assistant's reply "
                                                                "to learn"}
    assert {w["code"] for w in files["warden.jsonl"]["warnings"]} == {"duplicate", "world_fact"}


def test_training_refuses_bad_data_before_loading_a_model(tmp_path, tiny_llm_dir, capsys, proj):
    bad = _jsonl(tmp_path / "bad.jsonl", [_msgs(), "{oops", _msgs("Hi", "At ease."), {"messages": "x"}])
    with pytest.raises(CorpusError, match=r"bad.jsonl: the training data failed the gate with 2 error\(s\): "
                                          r"line 2: invalid JSON.*line 4: .*--skip-bad-rows"):
        train_sft(tiny_llm_dir, bad, tmp_path / "adapter", SFTRecipe())
    assert not (tmp_path / "adapter").exists()
    rc, _, err = _run(capsys, "--config", str(proj), "train", "sft", "--npc", "warden", "--data", str(bad),
                      "--out", str(tmp_path / "adapter"))
    assert rc == 2 and "--skip-bad-rows" in err and f"{bad}:2: invalid JSON" in err  # the report, then the error
    assert not (tmp_path / "adapter").exists()


def test_training_skips_bad_rows_when_asked(tmp_path, tiny_llm_dir):
    rows = [_msgs(), "{oops", _msgs("Hi", "At ease."), _msgs(), _msgs("Long?", "Halt. " * 200)]
    bad = _jsonl(tmp_path / "bad.jsonl", rows)
    manifest = train_sft(tiny_llm_dir, bad, tmp_path / "adapter", SFTRecipe(max_steps=1, batch_size=2, max_length=64),
                         skip_bad_rows=True)
    gate = manifest["data"]["gate"]
    assert manifest["data"]["examples"] == 2 and manifest["data"]["format"] == "messages"
    assert (gate["rows"], gate["kept"], gate["errors"]) == (5, 2, 1)
    assert gate["by_code"] == {"invalid_json": 1, "duplicate": 1, "overlong": 1}
    assert manifest["recipe"]["overlong"] == "drop" and (tmp_path / "adapter" / "adapter_config.json").is_file()
