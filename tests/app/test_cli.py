"""The CLI contract: commands, --json output, batch mode, one-line errors and exit codes."""

import json
import subprocess
import sys

import pytest

from app.cli import main
from tests.conftest import REPO, write_project


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def cfg(tmp_path, tiny_llm_dir):
    return str(write_project(tmp_path / "proj", str(tiny_llm_dir)))


def test_rebuild_search_say(capsys, cfg, tmp_path):
    rc, out, _ = run(capsys, "--config", cfg, "index", "rebuild", "--json")
    stats = json.loads(out)
    assert rc == 0 and stats["documents"] == 6 and stats["embedded"] == stats["chunks"]

    rc, out, _ = run(capsys, "--config", cfg, "index", "search", "thirteen hours clock", "--k", "2", "--json")
    hits = json.loads(out)["hits"]
    assert rc == 0 and len(hits) == 2 and hits[0]["doc"] == "clock-room"

    rc, out, _ = run(capsys, "--config", cfg, "index", "search", "Who set the fire?", "--chapter", "1", "--json")
    assert all(h["chapter"] <= 1 for h in json.loads(out)["hits"])
    rc, out, _ = run(capsys, "--config", cfg, "index", "search", "iron keys", "--npc", "archivist", "--json")
    assert "wardens-keys" not in {h["doc"] for h in json.loads(out)["hits"]}

    rc, out, _ = run(capsys, "--config", cfg, "say", "When was the Library founded?", "--npc", "archivist",
                     "--chapter", "1", "--session", "t", "--json")
    reply = json.loads(out)
    assert rc == 0 and {"text", "route", "npc", "sources", "timings"} <= set(reply)
    assert reply["route"] == "fact" and reply["sources"][0]["doc"] == "founding"

    # a custom corpus and index from the command line
    other = tmp_path / "other-index"
    rc, out, _ = run(capsys, "--config", cfg, "index", "rebuild", "--corpus", str(tmp_path / "proj" / "lore"),
                     "--index", str(other), "--json")
    assert rc == 0 and (other / "CURRENT").is_file()


def test_batch_mode_keeps_going_past_bad_lines(capsys, cfg, tmp_path):
    run(capsys, "--config", cfg, "index", "rebuild")
    lines = tmp_path / "scene.jsonl"
    lines.write_text("\n".join([
        json.dumps({"npc": "warden", "text": "Halt? Who, me?", "chapter": 1, "session": "b"}),
        "{broken",
        json.dumps({"npc": "nobody", "text": "hello"}),
        json.dumps({"npc": "warden", "text": ""}),
        json.dumps({"npc": "archivist", "text": "How many books can I borrow?", "chapter": 1, "session": "b"}),
    ]) + "\n")
    rc, out, err = run(capsys, "--config", cfg, "say", "--file", str(lines), "--json")
    rows = [json.loads(x) for x in out.splitlines()]
    assert len(rows) == 5 and rc == 3 and "3 line(s)" in err
    assert "text" in rows[0] and "text" in rows[4]
    assert "scene.jsonl:2: invalid JSON" in rows[1]["error"]
    assert "unknown NPC 'nobody'" in rows[2]["error"]
    assert "empty" in rows[3]["error"]


@pytest.mark.parametrize("argv, message", [
    (["say", "hello", "--npc", "ghost"], "unknown NPC 'ghost'"),
    (["say", "   ", "--npc", "warden"], "player text is empty"),
    (["say", "x" * 2500, "--npc", "warden"], "limit is 2000"),
    (["index", "search", "clock", "--k", "0"], "--k must be at least 1"),
])
def test_bad_input_is_one_line_error_exit_2(capsys, cfg, argv, message):
    run(capsys, "--config", cfg, "index", "rebuild")
    rc, out, err = run(capsys, "--config", cfg, *argv)
    assert rc == 2 and message in err and err.count("\n") == 1 and err.startswith("error: ")


def test_missing_index_and_bad_config(capsys, cfg, tmp_path):
    rc, out, err = run(capsys, "--config", cfg, "say", "hello", "--npc", "warden", "--json")
    assert rc == 2 and "no index at" in err and json.loads(out)["type"] == "IndexMissingError"
    rc, _, err = run(capsys, "--config", str(tmp_path / "none.yaml"), "validate")
    assert rc == 2 and "not found" in err


def test_malformed_front_matter_is_reported_by_rebuild(capsys, cfg, tmp_path):
    bad = tmp_path / "proj" / "lore" / "bad.md"
    bad.write_text("---\ntitle: Bad\nkind: room\nnpc_scope: all\nchapter: -1\n---\nBody.\n")
    rc, _, err = run(capsys, "--config", cfg, "index", "rebuild")
    assert rc == 2 and f"{bad}:5: chapter must be a positive integer" in err
    assert not (tmp_path / "proj" / "index" / "CURRENT").exists()


def test_train_sft_cli(capsys, cfg, tmp_path, style_file):
    out_dir = tmp_path / "adapter"
    rc, out, _ = run(capsys, "--config", cfg, "train", "sft", "--npc", "warden", "--data", str(style_file),
                     "--out", str(out_dir), "--max-steps", "1", "--json")
    manifest = json.loads(out)
    assert rc == 0 and manifest["npc"] == "warden" and (out_dir / "adapter_config.json").is_file()
    rc, _, err = run(capsys, "--config", cfg, "train", "sft", "--npc", "warden", "--data", str(style_file),
                     "--rank", "0")
    assert rc == 2 and "params.r" in err  # the method's own field, named


def test_console_script_and_validate_on_the_shipped_project():
    exe = REPO / ".venv" / "bin" / "eterna"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "app"]
    proc = subprocess.run([*cmd, "validate", "--json"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["lore_documents"] >= 40


def test_chat_is_interactive_over_stdin(cfg):
    assert main(["--config", cfg, "index", "rebuild"]) == 0
    exe = REPO / ".venv" / "bin" / "eterna"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "app"]
    proc = subprocess.run([*cmd, "--config", cfg, "chat", "--npc", "warden"], input="Hello there!\n\n",
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Talking to Capitán Rodrigo Ferrán" in proc.stdout and "Capitán Rodrigo Ferrán> " in proc.stdout
    assert "  [style]" in proc.stdout  # the route after the streamed reply


def test_index_list_and_rollback(capsys, cfg, tmp_path):
    run(capsys, "--config", cfg, "index", "rebuild")
    doc = tmp_path / "proj" / "lore" / "garden-of-ink.md"
    doc.write_text(doc.read_text().replace("October", "November"))
    run(capsys, "--config", cfg, "index", "rebuild")
    rc, out, _ = run(capsys, "--config", cfg, "index", "list", "--json")
    gens = json.loads(out)["generations"]
    assert rc == 0 and [g["live"] for g in gens] == [False, True]
    rc, out, _ = run(capsys, "--config", cfg, "index", "rollback", "--json")
    assert rc == 0 and json.loads(out)["live"] == gens[0]["generation"]
    rc, out, _ = run(capsys, "--config", cfg, "index", "search", "oak galls", "--k", "1", "--json")
    assert "October" in json.loads(out)["hits"][0]["text"]
    rc, _, err = run(capsys, "--config", cfg, "index", "rollback")
    assert rc == 2 and "no earlier generation" in err
    rc, _, err = run(capsys, "--config", cfg, "index", "rollback", "nope")
    assert rc == 2 and "no generation 'nope'" in err


def test_batch_line_with_lone_surrogates_is_answered_not_fatal(capsys, cfg, tmp_path):
    run(capsys, "--config", cfg, "index", "rebuild")
    lines = tmp_path / "bad.jsonl"
    lines.write_text('{"npc": "warden", "text": "hello \\ud800 there"}\n{"npc": "warden", "text": "\\udfff"}\n'
                     '{"npc": "warden", "text": "good evening"}\n')
    rc, out, err = run(capsys, "--config", cfg, "say", "--file", str(lines), "--json")
    rows = [json.loads(x) for x in out.splitlines()]
    assert len(rows) == 3 and rc == 3
    assert "text" in rows[0] and "text" in rows[2]
    assert "bad.jsonl:2:" in rows[1]["error"] and "empty" in rows[1]["error"]


def test_eval_facts_and_router(capsys, cfg, tmp_path):
    run(capsys, "--config", cfg, "index", "rebuild")
    facts = tmp_path / "facts.jsonl"
    facts.write_text("\n".join(json.dumps(x) for x in [
        {"npc": "director", "question": "Who built the great clock?", "answers": ["Oriol Santpere"], "chapter": 1,
         "doc": "clock-room"},
        {"npc": "archivist", "question": "How many books may a reader borrow at once?", "answer": "3", "chapter": 1,
         "doc": "lending-rules"},
        {"npc": "director", "question": "Who set the Fire of 1731?", "answers": ["Brother Anselmo"], "chapter": 1,
         "doc": "the-fire-truth"},
        {"npc": "archivist", "question": "How many iron keys does the Warden carry?", "answers": ["9"], "chapter": 1,
         "doc": "wardens-keys"},
    ]) + "\n")
    rc, out, _ = run(capsys, "--config", cfg, "eval", "facts", "--file", str(facts), "--json", "--items")
    rep = json.loads(out)
    assert rc == 0 and rep["n"] == 4 and rep["n_in_scope"] == 2 and rep["n_out_of_scope"] == 2
    assert set(rep) >= {"contains_gold", "gold_in_sources", "spoiler_leaks", "idk_correct", "n"}
    assert rep["spoiler_leaks"] == sum(r["spoiler"] and r["contains_gold"] for r in rep["items"])
    assert [r["in_scope"] for r in rep["items"]] == [True, True, False, False]
    assert rep["gold_in_sources"] == 1.0
    assert {"words_p50", "words_p90", "answer_first", "clean", "repeat_rate"} <= set(rep)
    assert all({"words", "answer_first", "clean", "repeats"} <= set(r) for r in rep["items"])

    lines = tmp_path / "lines.jsonl"
    lines.write_text("\n".join(json.dumps(x) for x in [
        {"npc": "warden", "text": "Good evening, captain."}, {"npc": "director", "text": "I look around."}]) + "\n")
    rc, out, _ = run(capsys, "--config", cfg, "eval", "quality", "--file", str(lines), "--qa", str(facts),
                     "--json", "--items", "--fluency")
    rep = json.loads(out)
    assert rc == 0 and rep["n"] == 2 and rep["facts"]["n"] == 4
    assert {"words_median", "repeats_rate", "clean_rate"} <= set(rep["summary"])
    for r in rep["items"]:
        assert isinstance(r["words"], int) and isinstance(r["repeats"], bool)
        assert (r["fluency"] is None) == (not r["generated"] or r["words"] < 4) or r["fluency"] is None
    lines.write_text('{"npc": "warden"}\n')
    rc, _, err = run(capsys, "--config", cfg, "eval", "quality", "--file", str(lines))
    assert rc == 2 and "lines.jsonl:1" in err

    router = tmp_path / "router.jsonl"
    router.write_text("\n".join(json.dumps({"text": t, "label": lbl}) for t, lbl in [
        ("Who built the clock?", "fact"), ("hello there!", "style"), ("are you a chatbot?", "offworld"),
        ("tell me about the founding in a rhyme", "both")]) + "\n")
    rc, out, _ = run(capsys, "--config", cfg, "eval", "router", "--file", str(router), "--json")
    rep = json.loads(out)
    assert rc == 0 and rep["n"] == 4 and set(rep) >= {"accuracy", "per_label", "confusion"}
    assert sum(sum(row.values()) for row in rep["confusion"].values()) == 4
    assert rep["accuracy"] == sum(rep["confusion"][g][g] for g in rep["confusion"]) / 4

    router.write_text('{"text": "hi", "label": "smalltalk"}\n')
    rc, _, err = run(capsys, "--config", cfg, "eval", "router", "--file", str(router))
    assert rc == 2 and "router.jsonl:1: label 'smalltalk'" in err
    facts.write_text('{"npc": "director", "question": "q", "answers": [], "chapter": 1, "doc": "x"}\n')
    rc, _, err = run(capsys, "--config", cfg, "eval", "facts", "--file", str(facts))
    assert rc == 2 and "facts.jsonl:1: 'answers' must be a non-empty list" in err


def test_rebuild_checks_lore_against_the_world_and_cast(capsys, cfg, tmp_path):
    from pathlib import Path

    root = Path(cfg).parent
    (root / "eterna.yaml").write_text((root / "eterna.yaml").read_text() + "world:\n  kinds: [room, rule]\n")
    rc, _, err = run(capsys, "--config", cfg, "index", "rebuild")
    assert rc == 2 and "npcs.yaml: npcs.1.knows: lore kind 'book' is not declared in world.kinds" in err
    (root / "eterna.yaml").write_text((root / "eterna.yaml").read_text().replace(
        "kinds: [room, rule]", "kinds: [room, rule, history, character, item, book]"))
    doc = root / "lore" / "clock-room.md"
    original = doc.read_text()
    doc.write_text(original.replace("kind: room", "kind: kitchen"))
    rc, _, err = run(capsys, "--config", cfg, "index", "rebuild")
    assert rc == 2 and "clock-room.md:3: kind 'kitchen' is not declared by this world" in err
    doc.write_text(original)
    doc.write_text(doc.read_text().replace("npc_scope: all", "npc_scope: [wardn]"))
    rc, _, err = run(capsys, "--config", cfg, "index", "rebuild")
    assert rc == 2 and "clock-room.md:4: npc_scope names 'wardn', who is not in the cast" in err


def test_train_recipe_checkpoints_resume_merge_export(capsys, cfg, tmp_path, style_file):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: lora\nparams: {r: 4, alpha: 8}\nbatch_size: 4\nlogging_steps: 1\nlearning_rate: 0.02\n")
    out_dir = tmp_path / "adapters" / "w"
    rc, out, err = run(capsys, "--config", cfg, "train", "sft", "--npc", "warden", "--data", str(style_file),
                       "--out", str(out_dir), "--recipe", str(recipe), "--max-steps", "2", "--save-steps", "1",
                       "--keep-checkpoints", "--json")
    manifest = json.loads(out)  # stdout holds the JSON only; progress went to stderr as plain lines (no TTY)
    assert rc == 0 and manifest["recipe"]["params"]["r"] == 4 and manifest["recipe"]["save_steps"] == 1
    assert "step 2/2 loss" in err and manifest["loss_curve"] == "loss.png" and (out_dir / "loss.png").is_file()
    assert (tmp_path / "adapters" / "w.checkpoints" / "checkpoint-2").is_dir()
    rc, _, err = run(capsys, "--config", cfg, "train", "sft", "--npc", "warden", "--data", str(style_file),
                     "--out", str(out_dir), "--recipe", str(recipe), "--max-steps", "2", "--save-steps", "1",
                     "--lr", "0.5", "--resume")
    assert rc == 2 and "recipe.learning_rate differ" in err and "without --resume" in err

    merged = tmp_path / "merged"
    rc, out, _ = run(capsys, "--config", cfg, "adapters", "merge", "--adapter", str(out_dir), "--out", str(merged),
                     "--json")
    assert rc == 0 and json.loads(out)["adapter"]["npc"] == "warden" and (merged / "model.safetensors").is_file()
    gguf_path = tmp_path / "w.gguf"
    rc, out, _ = run(capsys, "--config", cfg, "adapters", "export-gguf", "--adapter", str(out_dir), "--out",
                     str(gguf_path), "--json")
    assert rc == 0 and json.loads(out)["bytes"] == gguf_path.stat().st_size > 0
    rc, _, err = run(capsys, "--config", cfg, "adapters", "merge", "--adapter", str(tmp_path), "--out",
                     str(tmp_path / "m2"))
    assert rc == 2 and "not a PEFT adapter" in err
