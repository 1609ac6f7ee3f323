"""Shipping an adapter: float16 weights at half the bytes, the manifest unchanged but for a `shipped` entry, and
the same voice when served; `manifest_problems` names the adapter and the fix when its data or prompt changed."""

import json

import pytest
import torch
from safetensors import safe_open

from app.config import GenerationConfig
from app.backends.transformers import Generator
from retrieval.errors import AdapterError
from tuning.adapters import ADAPTER_MANIFEST, manifest_problems, read_adapter_manifest, ship_adapter
from tuning.base import model_fingerprint
from tuning.sft import SFTRecipe, train_sft

SYSTEM = "You are the Warden."


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_llm_dir):
    from tests.fixtures_data import STYLE

    root = tmp_path_factory.mktemp("ship")
    data = root / "warden.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in STYLE), encoding="utf-8")
    recipe = SFTRecipe(max_steps=4, batch_size=4, learning_rate=5e-3, params={"r": 4, "alpha": 8})
    train_sft(tiny_llm_dir, data, root / "trained" / "warden", recipe, system=SYSTEM, npc="warden")
    return root / "trained" / "warden", data


@pytest.fixture(scope="module")
def shipped(trained):
    src, _ = trained
    dst = src.parent.parent / "shipped" / "warden"
    return dst, ship_adapter(src, dst)


def _dtypes(path):
    with safe_open(str(path / "adapter_model.safetensors"), framework="pt") as f:
        return {f.get_slice(k).get_dtype() for k in f.keys()}


def test_shipped_weights_are_float16_at_half_the_bytes(trained, shipped):
    src, dst = trained[0], shipped[0]
    assert _dtypes(src) == {"F32"} and _dtypes(dst) == {"F16"}
    before = (src / "adapter_model.safetensors").stat().st_size
    after = (dst / "adapter_model.safetensors").stat().st_size
    assert 0.45 < after / before < 0.55, (before, after)
    assert sorted(p.name for p in dst.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                     ADAPTER_MANIFEST, "loss.png"]  # the loss curve travels too
    assert not [p for p in dst.parent.iterdir() if p.name.startswith(".")]  # no staging left behind
    assert _dtypes(src) == {"F32"}  # the trained copy is left as it was


def test_shipped_manifest_keeps_what_built_it(trained, shipped):
    trained_manifest = read_adapter_manifest(trained[0])
    on_disk = read_adapter_manifest(shipped[0])
    assert on_disk == json.loads(json.dumps(shipped[1]))
    extra = on_disk.pop("shipped")
    assert on_disk == trained_manifest  # data hash, recipe, system prompt, base, metrics: untouched
    assert extra["dtype"] == "float16" and extra["trained_dtype"] == "float32"
    assert extra["bytes"] == (shipped[0] / "adapter_model.safetensors").stat().st_size
    assert extra["trained_bytes"] == (trained[0] / "adapter_model.safetensors").stat().st_size
    assert extra["by"] == "eterna adapters ship"


def test_shipping_a_shipped_copy_keeps_its_origin(shipped, tmp_path):
    again = ship_adapter(shipped[0], tmp_path / "again")["shipped"]
    assert again["trained_dtype"] == "float32" and again["trained_bytes"] == shipped[1]["shipped"]["trained_bytes"]
    assert _dtypes(tmp_path / "again") == {"F16"}


def test_shipped_adapter_speaks_like_the_trained_one(trained, shipped, tiny_llm_dir):
    gen = Generator(tiny_llm_dir, "float32")
    gen.add_adapter("trained", trained[0])
    gen.add_adapter("shipped", shipped[0])
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hello!"}]
    enc = gen._encode(msgs)
    logits = {}
    with torch.inference_mode():
        for name in ("trained", "shipped"):
            gen.model.set_adapter(name)
            logits[name] = gen.model(**enc).logits  # (1, seq, vocab)
        with gen.model.disable_adapter():
            base = gen.model(**enc).logits
    gap = (logits["trained"] - base).abs().max()
    assert gap > 1e-3  # the adapter changes the model...
    assert (logits["shipped"] - logits["trained"]).abs().max() < gap * 0.05  # ...and halving barely does
    cfg = GenerationConfig(max_new_tokens=6)
    assert gen.generate(msgs, cfg, adapter="shipped").text == gen.generate(msgs, cfg, adapter="trained").text


def test_manifest_problems_name_the_adapter_and_the_fix(trained, shipped, tiny_llm_dir, tmp_path):
    path, data = shipped[0], trained[1]
    manifest = read_adapter_manifest(path)
    assert manifest_problems(manifest, path, data=data, system=SYSTEM,
                             fingerprint=model_fingerprint(tiny_llm_dir)) == []
    edited = tmp_path / "warden.jsonl"
    edited.write_text(data.read_text() + data.read_text().splitlines()[0] + "\n")
    [stale] = manifest_problems(manifest, path, data=edited)
    assert str(path) in stale and manifest["data"]["sha256"] in stale and "eterna train sft --npc warden" in stale
    [detuned] = manifest_problems(manifest, path, npc="warden", system=SYSTEM + " Speaks in rhyme.")
    assert str(path) in detuned and "system prompt" in detuned and "retrain" in detuned
    [other] = manifest_problems(manifest, path, fingerprint="0000")
    assert "trained on base model" in other
    assert len(manifest_problems(manifest, path, data=tmp_path / "gone.jsonl", system="x", fingerprint="0")) == 3


def test_ship_refuses_a_folder_without_weights(tmp_path):
    with pytest.raises(AdapterError, match="not a PEFT adapter"):
        ship_adapter(tmp_path, tmp_path / "out")


def _merged_delta(tiny_llm_dir, adapter):
    """The adapter's weight change on every target layer (PEFT's merge), by parameter name."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_llm_dir, dtype=torch.float32)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload().state_dict()
    return {k: merged[k] - before[k] for k in before if not torch.equal(merged[k], before[k])}


def test_a_scaled_adapter_changes_the_weights_by_the_factor(trained, tiny_llm_dir, tmp_path):
    from tuning.adapters import scale_adapter

    src = trained[0]
    m = scale_adapter(src, tmp_path / "half", 0.5)
    assert m["scaled"]["factor"] == 0.5 and m["scaled"]["trained_lora_alpha"] == 8
    assert json.loads((tmp_path / "half" / "adapter_config.json").read_text())["lora_alpha"] == 4
    again = scale_adapter(tmp_path / "half", tmp_path / "quarter", 0.5)["scaled"]
    assert again["total_factor"] == 0.25 and again["trained_lora_alpha"] == 8  # the origin is kept
    full, half = _merged_delta(tiny_llm_dir, src), _merged_delta(tiny_llm_dir, tmp_path / "half")
    assert full and full.keys() == half.keys()
    for k in full:
        torch.testing.assert_close(half[k], 0.5 * full[k], rtol=1e-4, atol=1e-6)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


@pytest.mark.parametrize("factor", [0, -1, 5, float("nan")])
def test_a_scale_outside_its_range_is_refused_and_writes_nothing(trained, tmp_path, factor):
    from tuning.adapters import scale_adapter

    with pytest.raises(AdapterError, match="factor"):
        scale_adapter(trained[0], tmp_path / "out", factor)
    assert not (tmp_path / "out").exists()
