"""`eval mc`: the three formats parse, and the batched, padded scoring equals one forward pass per choice."""

import json

import numpy as np
import pytest
import torch

from app.evaluation.mc import MCItem, load_mc, score_mc
from retrieval.errors import EternaError


def test_formats(tmp_path):
    p = tmp_path / "arc.jsonl"
    p.write_text(json.dumps({"query": "Question: Which is hot?", "choices": ["ice", "fire"], "gold": 1}) + "\n" +
                 json.dumps({"question": "Which is cold?", "choices": {"text": ["ice", "fire"], "label": ["A", "B"]},
                             "answerKey": "A"}) + "\n")
    a, b = load_mc(p, "arc")
    assert a == MCItem("Question: Which is hot?\nAnswer:", (" ice", " fire"), 1) and b.gold == 0
    m = tmp_path / "mmlu.jsonl"
    m.write_text(json.dumps({"question": "2+2?", "choices": ["3", "4"], "answer": "B"}) + "\n")
    (it,) = load_mc(m, "mmlu")
    assert it.context == "2+2?\nA. 3\nB. 4\nAnswer:" and it.choices == (" A", " B") and it.gold == 1
    h = tmp_path / "hs.jsonl"
    h.write_text(json.dumps({"ctx": "He opened the door", "endings": ["and left.", "and sang."], "label": 0}) + "\n")
    assert load_mc(h, "hellaswag")[0].choices == (" and left.", " and sang.")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x"}\n')
    with pytest.raises(EternaError, match="bad.jsonl:1: not a mmlu item"):
        load_mc(bad, "mmlu")


def test_batched_scores_equal_single_passes(tiny_llm_dir):
    from tuning.base import load_base

    model, tok = load_base(tiny_llm_dir, "float32")
    items = [MCItem("Question: Which is hot?\nAnswer:", (" ice", " fire", " snow and hail"), 1),
             MCItem("Question: What do cats say?\nAnswer:", (" meow", " a long, loud bark"), 0)]
    got = score_mc(model, tok, items, batch_size=3)

    def ll(ctx, cont):
        c = tok(ctx, add_special_tokens=False)["input_ids"]
        w = tok(ctx + cont, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([w])).logits[0], -1)
        return sum(float(logp[i - 1, w[i]]) for i in range(len(c), len(w)))

    for k, it in enumerate(items):
        lls = np.array([ll(it.context, c) for c in it.choices])
        assert got["correct"][k] == (int(np.argmax(lls)) == it.gold)
        norm = lls / np.array([len(c) for c in it.choices])
        assert got["correct_norm"][k] == (int(np.argmax(norm)) == it.gold)
    assert got["n"] == 2 and got["accuracy"] == np.mean(got["correct"])


def test_forgetting_report_compares_each_adapter_with_the_base(tiny_llm_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    from app.evaluation.mc import forgetting_report
    from tuning.base import load_base, model_fingerprint

    model, tok = load_base(tiny_llm_dir, "float32")
    peft = get_peft_model(load_base(tiny_llm_dir, "float32")[0],
                          LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    g = torch.Generator().manual_seed(0)
    for name, p in peft.named_parameters():
        if "lora_B" in name:
            p.data = torch.randn(p.shape, generator=g)
    peft.save_pretrained(tmp_path / "loud")
    (tmp_path / "loud" / "eterna_adapter.json").write_text(
        json.dumps({"base": {"fingerprint": model_fingerprint(tiny_llm_dir)}}))
    items = [MCItem(f"Question: item {i}?\nAnswer:", (" yes", " no", " maybe"), i % 3) for i in range(12)]
    report = forgetting_report(model, tok, tiny_llm_dir, items, {"loud": tmp_path / "loud"})
    base = score_mc(load_base(tiny_llm_dir, "float32")[0], tok, items)
    assert report["base"]["accuracy"] == base["accuracy"] and report["n"] == 12
    r = report["adapters"]["loud"]
    assert r["delta"] == pytest.approx(r["accuracy"] - base["accuracy"], abs=1e-3)
    assert r["low"] <= r["delta"] <= r["high"]
    assert 0 <= r["p"] <= 1
