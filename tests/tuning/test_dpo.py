"""DPO with TRL on the tiny Llama: a fresh LoRA, a continued SFT adapter (the reference is the SFT model), a
continued bottleneck adapter, the held-out reward figures in the manifest, and the `train dpo` CLI."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from app.cli import main
from retrieval.errors import ConfigError, CorpusError
from tests.conftest import write_project
from tuning.adapters import ADAPTER_MANIFEST
from tuning.base import load_base, model_fingerprint
from tuning.data import data_fingerprint
from tuning.dpo import DPORecipe, split_pairs, train_dpo
from tuning.sft import SFTRecipe, train_sft

SYSTEM = "You are the Warden. Speak tersely."
PAIRS = [
    {"prompt": p, "chosen": c, "rejected": r} for p, c, r in [
        ("Hello!", "Halt. Who goes there? Move along, reader.", "Hi there! How can I help you today?"),
        ("I'm lost.", "At ease. Lost is fine. Move along, reader.", "No worries! Here are some tips for you."),
        ("You look tired.", "Tired? Never. Watchful. Move along, reader.", "Aww, thanks for noticing, friend!"),
        ("Can I pass?", "Not tonight. Move along, reader.", "Sure thing, go right ahead and enjoy!"),
        ("Nice hat.", "It is a helmet. Move along, reader.", "Thank you so much, I love it too!"),
        ("What time is it?", "Late. Move along, reader.", "Great question! Let me check that for you."),
    ]]
FAST = dict(max_steps=3, batch_size=2, logging_steps=1, held_out=0.34)


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _finite_metrics(m):
    return all(isinstance(v, float) and math.isfinite(v) for v in m.values())


@pytest.fixture(scope="module")
def prefs(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("prefs") / "warden.jsonl", PAIRS)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory, tiny_llm_dir, prefs):
    out = tmp_path_factory.mktemp("dpo") / "adapters" / "warden-dpo"
    recipe = DPORecipe(params={"r": 4, "alpha": 8}, learning_rate=2e-2, **FAST)
    return out, train_dpo(tiny_llm_dir, prefs, out, recipe, system=SYSTEM, npc="warden")


def test_fresh_adapter_manifest_records_what_built_it(fresh, tiny_llm_dir, prefs):
    out, manifest = fresh
    assert json.loads((out / ADAPTER_MANIFEST).read_text()) == json.loads(json.dumps(manifest))
    assert manifest["base"]["fingerprint"] == model_fingerprint(tiny_llm_dir)
    assert manifest["data"] == {"path": str(prefs.resolve()), "sha256": data_fingerprint(prefs), "examples": 6}
    assert manifest["system"] == SYSTEM and manifest["start"] == {"from": "base"}
    assert manifest["method"] == "lora" and manifest["recipe"]["params"]["r"] == 4
    assert manifest["recipe"]["beta"] == 0.1 and set(manifest["versions"]) >= {"trl", "peft", "torch"}
    m = manifest["metrics"]
    assert m["steps"] == 3 and m["train_pairs"] == 4 and m["held_out_pairs"] == 2 and math.isfinite(m["train_loss"])
    before, after = m["held_out"]["before"], m["held_out"]["after"]
    assert _finite_metrics(before) and _finite_metrics(after)
    # a fresh adapter starts as the identity: the policy is the reference, so every implicit reward is 0
    assert before["reward_margin"] == 0 and before["reward_accuracy"] == 0 and before["loss"] == pytest.approx(
        math.log(2), abs=1e-4)
    assert after["reward_margin"] != 0 and after["logp_margin"] != before["logp_margin"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_fresh_adapter_trained_only_its_own_weights_and_loads_with_plain_peft(fresh, tiny_llm_dir):
    from peft import PeftModel

    out, _ = fresh
    weights = load_file(str(out / "adapter_model.safetensors"))
    base_weights = load_file(str(tiny_llm_dir / "model.safetensors"))
    assert weights and all("lora_" in n for n in weights) and not (out / "ref").exists()  # TRL's ref copy not shipped
    assert any(t.abs().max() > 0 for n, t in weights.items() if "lora_B" in n)  # lora_B left zero: it learned
    model, tok = load_base(tiny_llm_dir)
    enc = tok("Hello there", return_tensors="pt")
    with torch.no_grad():
        base_logits = model(**enc).logits
        peft = PeftModel.from_pretrained(model, str(out))
        tuned = peft(**enc).logits
        with peft.disable_adapter():
            again = peft(**enc).logits
    assert not torch.allclose(tuned, base_logits) and torch.equal(again, base_logits)
    assert all(torch.equal(base_weights[n], p) for n, p in peft.get_base_model().state_dict().items()
               if n in base_weights)  # the base weights are untouched


def test_continuing_an_sft_adapter_uses_it_as_start_and_reference(tmp_path, tiny_llm_dir, style_file, prefs):
    sft = tmp_path / "sft"
    train_sft(tiny_llm_dir, style_file, sft, SFTRecipe(max_steps=3, batch_size=4, learning_rate=2e-2,
                                                        params={"r": 4, "alpha": 8}), system=SYSTEM)
    out = tmp_path / "dpo"
    manifest = train_dpo(tiny_llm_dir, prefs, out, DPORecipe(max_steps=2, learning_rate=1e-4, **{
        k: v for k, v in FAST.items() if k != "max_steps"}), start=sft, system=SYSTEM)
    assert manifest["start"]["from"] == "adapter" and manifest["start"]["path"] == str(sft.resolve())
    assert manifest["recipe"]["params"]["r"] == 4  # the SFT adapter's own method and params
    before = manifest["metrics"]["held_out"]["before"]
    # the reference is the SFT model (TRL's frozen "ref" copy), not the base: before training the rewards are 0
    assert before["reward_margin"] == 0 and before["reward_chosen"] == 0
    a, b = load_file(str(sft / "adapter_model.safetensors")), load_file(str(out / "adapter_model.safetensors"))
    assert set(a) == set(b)
    lora_b = [n for n in a if "lora_B" in n]
    drift = max((a[n] - b[n]).abs().max().item() for n in lora_b)
    scale = max(a[n].abs().max().item() for n in lora_b)
    assert 0 < drift < 0.2 * scale  # moved a little from the SFT weights, not from a fresh zero init


def test_continuing_a_bottleneck_adapter(tmp_path, tiny_llm_dir, style_file, prefs):
    sft = tmp_path / "sft-bn"
    train_sft(tiny_llm_dir, style_file, sft, SFTRecipe(method="adapter", max_steps=3, batch_size=4,
                                                        learning_rate=2e-2, params={"r": 4}), system=SYSTEM)
    out = tmp_path / "dpo-bn"  # float32: policy and the separate reference model agree to the last bit
    manifest = train_dpo(tiny_llm_dir, prefs, out, DPORecipe(learning_rate=1e-3, bf16=False, **FAST), start=sft,
                         system=SYSTEM)
    assert manifest["kind"] == "bottleneck" and manifest["method"] == "adapter"
    m = manifest["metrics"]["held_out"]
    assert m["before"]["reward_margin"] == 0 and m["after"]["reward_margin"] != 0  # reference: base + SFT blocks
    a = load_file(str(sft / "bottleneck_model.safetensors"))
    b = load_file(str(out / "bottleneck_model.safetensors"))
    assert set(a) == set(b) and any(not torch.equal(a[n], b[n]) for n in a)


def test_split_is_deterministic_and_keeps_one_for_training(tmp_path):
    train, held = split_pairs(PAIRS, 0.2, 0, tmp_path / "p.jsonl")
    assert (train, held) == split_pairs(PAIRS, 0.2, 0, tmp_path / "p.jsonl") and len(held) == 1
    assert len(split_pairs(PAIRS[:2], 0.9, 0, tmp_path)[1]) == 1
    assert split_pairs(PAIRS, 0.0, 0, tmp_path) == (PAIRS, [])
    with pytest.raises(CorpusError, match="at least 2"):
        split_pairs(PAIRS[:1], 0.2, 0, tmp_path / "p.jsonl")


def test_bad_inputs_fail_before_loading(tmp_path, tiny_llm_dir, prefs):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(PAIRS[0]) + "\n" + json.dumps({**PAIRS[1], "chosen": PAIRS[1]["rejected"]}) + "\n")
    with pytest.raises(CorpusError, match=f"{bad}:2: 'chosen' and 'rejected' are identical"):
        train_dpo(tiny_llm_dir, bad, tmp_path / "a", DPORecipe())
    with pytest.raises(ConfigError, match="method 'full' is not supported"):
        train_dpo(tiny_llm_dir, prefs, tmp_path / "a", DPORecipe(method="full"))
    with pytest.raises(ValueError, match="extra_forbidden|Extra inputs"):
        DPORecipe(betta=0.2)
    assert not (tmp_path / "a").exists()


def test_train_dpo_cli(capsys, tmp_path, tiny_llm_dir, style_file):
    cfg = str(write_project(tmp_path / "proj", str(tiny_llm_dir)))
    data = _write(tmp_path / "prefs.jsonl", PAIRS)
    # the NPC's SFT adapter at paths.adapters/<npc> is the default start point
    assert main(["--config", cfg, "train", "sft", "--npc", "warden", "--data", str(style_file), "--max-steps", "1",
                 "--json"]) == 0
    capsys.readouterr()
    rc = main(["--config", cfg, "train", "dpo", "--npc", "warden", "--data", str(data), "--max-steps", "2",
               "--beta", "0.2", "--held-out", "0.34", "--json"])
    out, err = capsys.readouterr()
    manifest = json.loads(out)
    adapters = tmp_path / "proj" / "adapters"
    assert rc == 0 and manifest["adapter"] == str(adapters / "warden-dpo") and manifest["npc"] == "warden"
    assert manifest["start"]["path"] == str((adapters / "warden").resolve()) and manifest["recipe"]["beta"] == 0.2
    assert "Speaking style" in manifest["system"]  # the engine's own persona prompt
    assert _finite_metrics(manifest["metrics"]["held_out"]["after"])
    assert (adapters / "warden-dpo" / "adapter_config.json").is_file()

    rc = main(["--config", cfg, "train", "dpo", "--npc", "warden", "--data", str(data), "--from-base",
               "--max-steps", "1", "--out", str(tmp_path / "fresh"), "--json"])
    assert rc == 0 and json.loads(capsys.readouterr()[0])["start"] == {"from": "base"}

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(PAIRS[0]) + "\n{not json\n")
    rc = main(["--config", cfg, "train", "dpo", "--npc", "warden", "--data", str(bad), "--max-steps", "1"])
    _, err = capsys.readouterr()
    assert rc == 2 and err.startswith(f"error: {bad}:2:") and err.count("\n") == 1
