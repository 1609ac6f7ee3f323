"""Distil a book character of the tiny world into a 1-layer student, check the artifact, and serve it."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from app.cli import main
from app.config import Cast, EternaConfig
from retrieval.errors import ConfigError
from tests.conftest import write_project
from tuning.adapters import ADAPTER_MANIFEST

BOOK = """
  - id: tome
    name: The Ember Tome
    role: book
    persona: A living book that remembers its own pages.
    style: Solemn. Speaks of itself as "we". Ends with "So it is written."
    knows: [history]
    adapter: null
    markers: {closes: ["So it is written."]}
"""


def add_book(config_path, adapter: str = "null"):
    npcs = config_path.parent / "npcs.yaml"
    npcs.write_text(npcs.read_text(encoding="utf-8") + BOOK.replace("adapter: null", f"adapter: {adapter}"),
                    encoding="utf-8")
    return npcs


VOICE = [("Hello.", "We greet thee, reader. So it is written."), ("Who are you?", "We are the tome. So it is written."),
         ("Tell me a tale.", "We remember the fire. So it is written."), ("Bye.", "Go then. So it is written.")]


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_llm_dir, embedder):
    """The tiny world with a book whose voice adapter was trained (a real teacher: base + LoRA)."""
    from retrieval.rebuild import rebuild_index
    from tuning.sft import SFTRecipe, train_sft

    path = write_project(tmp_path_factory.mktemp("distill") / "proj", str(tiny_llm_dir))
    style = path.parent / "tome.jsonl"
    style.write_text("".join(json.dumps({"messages": [{"role": "user", "content": u},
                                                      {"role": "assistant", "content": a}]}) + "\n"
                             for u, a in VOICE), encoding="utf-8")
    train_sft(tiny_llm_dir, style, path.parent / "adapters" / "tome", SFTRecipe(
        max_steps=8, batch_size=4, learning_rate=3e-2, params={"r": 8, "alpha": 16}), npc="tome")
    add_book(path, adapter="adapters/tome")
    cfg = EternaConfig.load(path)
    rebuild_index(cfg.paths.corpus, cfg.paths.index, embedder)
    return path


@pytest.fixture(scope="module")
def distilled(world):
    from app.distill import distill_npc
    from tuning.distill import DistillRecipe

    cfg = EternaConfig.load(world)
    cast = Cast.load(cfg.paths.npcs, cfg.world)
    # the random tiny teacher's greedy reply can be all newlines (stripped: nothing to learn), so it samples
    recipe = DistillRecipe(layers=1, dialogues=8, max_new_tokens=8, max_steps=8, learning_rate=2e-3, batch_size=2,
                           teacher_temperature=1.0, ce_weight=0.0)
    out = world.parent / "students" / "tome"
    return out, distill_npc(cfg, cast, "tome", out, recipe, chapter=1)


def test_training_dialogues_come_from_the_books_lore(distilled):
    out, manifest = distilled
    rows = [json.loads(line) for line in (out / "dialogues.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["split"] for r in rows].count("held_out") == manifest["data"]["held_out"] == 2
    assert len(rows) == 8 and manifest["data"]["train"] == 6
    lines = [r["messages"][-2]["content"] for r in rows]
    assert "What do you know of The Founding?" in lines and "Hello there." in lines
    assert any(line.startswith("Is it true that the Library was founded in 1387") for line in lines)
    # the lore is in the teacher's context on lore turns, and only in-scope lore of chapter 1
    fact_rows = [r for r in rows if "Founding" in r["messages"][-2]["content"]]
    assert all("Leonor de Quirós" in r["messages"][0]["content"] for r in fact_rows)
    text = json.dumps(rows, ensure_ascii=False)
    assert "Anselmo" not in text  # chapter 3 (a spoiler)
    assert "Santpere" not in text  # a room, which the book does not know
    assert all(r["messages"][-1]["role"] == "assistant" and r["messages"][-1]["content"].strip() for r in rows)
    assert manifest["data"]["chunks"] == 1 and manifest["data"]["chapter"] == 1


def test_student_is_smaller_and_learned(distilled, world, tiny_llm_dir):
    from transformers import AutoModelForCausalLM

    from tuning.student import StudentPlan, build_student, merged_teacher

    out, manifest = distilled
    st = manifest["student"]
    student = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    teacher, _ = merged_teacher(tiny_llm_dir, world.parent / "adapters" / "tome")
    n_student = sum(p.numel() for p in student.parameters())
    assert student.config.num_hidden_layers == 1 and st["layers"] == [0]
    assert n_student == st["parameters"] < st["teacher_parameters"] == sum(p.numel() for p in teacher.parameters())
    init = build_student(teacher, StudentPlan(st["layers"], st["intermediate"], 0, 1), "teacher")
    trained = load_file(str(out / "model.safetensors"))
    changed = [k for k, v in init.state_dict().items() if k in trained and not torch.equal(v, trained[k])]
    assert len(changed) >= 5  # attention, MLP and norms all moved away from the copied teacher layer
    m = manifest["metrics"]
    assert m["steps"] == 8 and m["last_loss"] < m["first_loss"]
    for when in ("before", "after"):
        a = m["agreement"][when]
        assert a["tokens"] > 0 and 0 <= a["top1"] <= 1 and math.isfinite(a["kl"]) and a["kl"] >= 0
    assert m["agreement"]["after"]["kl"] < m["agreement"]["before"]["kl"]
    speed = m["speed"]
    assert speed["student_tokens_per_s"] > 0 and speed["teacher_tokens_per_s"] > 0 and speed["prompts"] == 2
    assert set(m["voice_markers"]) == {"teacher", "student", "prompts"}


def test_artifact_and_manifest(distilled, world, tiny_llm_dir):
    from retrieval.fileio import sha256_file
    from tuning.base import model_fingerprint

    out, manifest = distilled
    for name in ("config.json", "model.safetensors", "tokenizer.json", "dialogues.jsonl", ADAPTER_MANIFEST):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / ADAPTER_MANIFEST).read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(manifest))
    assert on_disk["kind"] == "student" and on_disk["npc"] == "tome"
    assert on_disk["adapter"]["path"] == str(world.parent / "adapters" / "tome")
    assert on_disk["adapter"]["method"] == "lora"
    assert on_disk["base"]["fingerprint"] == model_fingerprint(tiny_llm_dir)
    assert on_disk["data"]["sha256"] == sha256_file(out / "dialogues.jsonl")[:16]
    assert on_disk["recipe"]["temperature"] == 2.0 and "The Ember Tome" in on_disk["system"]
    assert on_disk["student"]["size_mb"] > 0 and on_disk["versions"]["trl"]
    assert on_disk["decoding"] == {"no_repeat_ngram": 3}
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_engine_serves_the_book_with_its_student(distilled, world):
    from app.dialogue import DialogueEngine

    out, _ = distilled
    npcs = world.parent / "npcs.student.yaml"
    text = (world.parent / "npcs.yaml").read_text(encoding="utf-8")
    npcs.write_text(text.replace("markers: {closes: [\"So it is written.\"]}",
                                 f"markers: {{closes: [\"So it is written.\"]}}\n    model: {out.parent.name}/tome"),
                    encoding="utf-8")
    engine = DialogueEngine.from_config(world, npcs=npcs)
    book = engine.cast.get("tome")
    assert book.model == out
    backend = engine.npc_backend(book)
    assert backend is not engine.generator and backend.model_dir == out
    assert backend.model.config.num_hidden_layers == 1
    assert engine.npc_backend(book) is backend  # loaded once
    assert backend.no_repeat_ngram == 3 and engine.generator.no_repeat_ngram == 0  # the student's own decoding
    assert engine.npc_backend(engine.cast.get("warden")) is engine.generator
    reply = engine.say("tome", "Hello there.", route="style")
    assert reply.context["model"] == str(out) and reply.tokens["reply"] >= 1
    other = engine.say("warden", "Hello there.", route="style")
    assert other.context["model"] == "base"
    # retrieval and grounding are unchanged: the book's scope still decides what it may know
    fact = engine.say("tome", "Who founded the Library, and when?", route="both")
    assert fact.context["model"] == str(out) and "founding" in {s["doc"] for s in fact.sources}
    assert engine.say("tome", "Who founded the Library?", route="both", use_adapter=False).context["model"] == "base"


def test_bad_model_path_names_the_file_and_field(world, tmp_path):
    npcs = tmp_path / "npcs.yaml"
    text = (world.parent / "npcs.yaml").read_text(encoding="utf-8")
    npcs.write_text(text + "    model: nowhere/student\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"npcs\.yaml: npcs\.3\.model: .*nowhere/student is not a folder.*"
                                          r"eterna train distill"):
        Cast.load(npcs)
    (tmp_path / "nowhere" / "student").mkdir(parents=True)
    with pytest.raises(ConfigError, match=rf"{tmp_path}/npcs\.yaml: npcs\.3\.model: .*{ADAPTER_MANIFEST}"):
        Cast.load(npcs)


def test_merged_teacher_carries_the_adapter(world, tiny_llm_dir):
    from tuning.adapters import attach_adapter
    from tuning.base import load_base, model_fingerprint
    from tuning.student import merged_teacher

    adapter = world.parent / "adapters" / "tome"
    merged, tok = merged_teacher(tiny_llm_dir, adapter)
    ids = tok("We remember the founding.", return_tensors="pt")["input_ids"]
    base, _ = load_base(tiny_llm_dir)
    with torch.no_grad():
        plain = base(input_ids=ids).logits
        peft = attach_adapter(base, "a", adapter, model_fingerprint(tiny_llm_dir))(input_ids=ids).logits
        got = merged(input_ids=ids).logits
    assert torch.allclose(got, peft, atol=1e-4) and not torch.allclose(got, plain, atol=1e-4)


def test_plan_fits_the_budget_by_narrowing_the_feed_forward(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from tuning.student import build_student, plan_student, spaced_layers

    assert spaced_layers(30, 4) == [0, 10, 19, 29] and spaced_layers(2, 1) == [0]
    torch.manual_seed(0)
    teacher = LlamaForCausalLM(LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=512, num_hidden_layers=8,
                                           num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True))
    total = sum(p.numel() for p in teacher.parameters())
    plan = plan_student(teacher, layers=2, max_ratio=0.2)
    assert plan.layers == [0, 7] and plan.intermediate < 512 and plan.intermediate % 64 == 0
    assert plan.parameters <= 0.2 * total < plan_student(teacher, 2, 0.2, plan.intermediate + 64).parameters
    student = build_student(teacher, plan)
    assert sum(p.numel() for p in student.parameters()) == plan.parameters
    s, t = student.model.layers[1].mlp, teacher.model.layers[7].mlp
    rows = [i for i in range(512) if any(torch.equal(t.gate_proj.weight[i], r) for r in s.gate_proj.weight)]
    assert len(rows) == plan.intermediate  # the kept neurons are the teacher's own, whole
    assert torch.equal(s.down_proj.weight, t.down_proj.weight[:, rows])
    assert torch.equal(student.model.embed_tokens.weight, teacher.model.embed_tokens.weight)
    with pytest.raises(ConfigError, match="--layers 8"):
        plan_student(teacher, layers=8)


def test_cli_train_distill(capsys, tmp_path, tiny_llm_dir):
    cfg = write_project(tmp_path / "proj", str(tiny_llm_dir))
    add_book(cfg)
    out = tmp_path / "student"
    rc = main(["--config", str(cfg), "train", "distill", "--npc", "tome", "--out", str(out), "--layers", "1",
               "--dialogues", "4", "--max-new-tokens", "6", "--teacher-temperature", "1", "--max-steps", "2",
               "--json"])
    stdout, _ = capsys.readouterr()
    manifest = json.loads(stdout)
    assert rc == 0 and manifest["model"] == str(out) and manifest["kind"] == "student"
    assert manifest["metrics"]["steps"] == 2 and (out / "model.safetensors").is_file()
    rc = main(["--config", str(cfg), "train", "distill", "--npc", "tome", "--layers", "2", "--json"])
    stdout, _ = capsys.readouterr()
    assert rc == 2 and "--layers 2" in json.loads(stdout)["error"]


def test_reply_logits_are_the_full_logits_at_the_reply_positions(tiny_llm_dir):
    from tuning.base import load_base
    from tuning.distill import reply_logits

    model, _ = load_base(tiny_llm_dir)
    torch.manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (2, 12))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    mask = torch.zeros((2, 11), dtype=torch.bool)
    mask[0, 5:9] = mask[1, 2:4] = True
    with torch.no_grad():
        full = model(**inputs).logits[:, :-1][mask]
        got = reply_logits(model, inputs, mask)
    assert got.shape == (6, model.config.vocab_size) and torch.allclose(got, full, atol=1e-5)


def test_no_repeat_ngram_bans_the_replys_own_repeats_not_the_prompts():
    from app.backends.decoding import Decoding
    from app.backends.transformers import DecodingRules

    proc = DecodingRules(Decoding(no_repeat_ngram=3), prompt_len=4, copy_ids=[])
    # prompt 7 8 9 7 | reply 1 2 5 1 2: "1 2 5" was said, so after "1 2" token 5 is banned; the prompt's "7 8" is not
    ids = torch.tensor([[7, 8, 9, 7, 1, 2, 5, 1, 2], [7, 8, 9, 7, 7, 8, 1, 2, 3]])
    scores = proc(ids, torch.zeros((2, 10)))
    assert scores[0, 5] == float("-inf") and torch.isfinite(scores[0]).sum() == 9
    assert torch.isfinite(scores[1]).all()  # "2 3" never seen before in row 1's reply; 7 8 9 is only the prompt's


def test_prompt_kd_adds_the_prompt_positions_to_the_loss(distilled, tiny_llm_dir, tmp_path):
    from tuning.distill import DistillRecipe, train_student

    out, _ = distilled
    rows = [json.loads(line) for line in (out / "dialogues.jsonl").read_text(encoding="utf-8").splitlines()]
    train = [r["messages"] for r in rows if r["split"] == "train"]
    held = [r["messages"] for r in rows if r["split"] == "held_out"]
    first = {}
    for weight in (0.0, 1.0):
        m = train_student(tiny_llm_dir, None, train, held, tmp_path / f"s{weight}", DistillRecipe(
            layers=1, max_steps=1, batch_size=2, prompt_kd=weight, no_repeat_ngram=0))
        assert m["recipe"]["prompt_kd"] == weight and m["decoding"] == {"no_repeat_ngram": 0}
        first[weight] = m["metrics"]["first_loss"]
    assert math.isfinite(first[1.0]) and first[1.0] > first[0.0]  # the same step, plus a KL over prompt positions
