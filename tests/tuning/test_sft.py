"""Train a real LoRA adapter with TRL on the tiny random Llama, then load it for generation."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from app.config import GenerationConfig
from app.backends.transformers import Generator
from retrieval.embeddings import native_bf16
from retrieval.errors import AdapterError, ConfigError
from tuning.adapters import ADAPTER_MANIFEST
from tuning.sft import SFTRecipe, train_sft


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_llm_dir):
    import json as _json

    from tests.fixtures_data import STYLE

    root = tmp_path_factory.mktemp("sft")
    data = root / "warden.jsonl"
    data.write_text("".join(_json.dumps(x) + "\n" for x in STYLE), encoding="utf-8")
    recipe = SFTRecipe(max_steps=6, batch_size=4, learning_rate=5e-3, logging_steps=1, params={"r": 4, "alpha": 8})
    manifest = train_sft(tiny_llm_dir, data, root / "adapters" / "warden", recipe, system="You are the Warden.",
                         npc="warden")
    return root / "adapters" / "warden", manifest


def test_adapter_is_standard_peft_with_manifest(trained, tiny_llm_dir):
    path, manifest = trained
    assert (path / "adapter_config.json").is_file() and (path / "adapter_model.safetensors").is_file()
    on_disk = json.loads((path / ADAPTER_MANIFEST).read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert manifest["npc"] == "warden" and manifest["data"]["examples"] == 8
    assert manifest["recipe"]["params"]["r"] == 4 and manifest["metrics"]["steps"] == 6
    assert manifest["recipe"]["params"]["dropout"] == 0.05  # the method's defaults are recorded too
    assert manifest["recipe"]["bf16"] == "auto" and manifest["metrics"]["bf16"] is native_bf16()  # what ran
    assert math.isfinite(manifest["metrics"]["train_loss"])
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_training_changed_the_adapter_weights(trained):
    weights = load_file(str(trained[0] / "adapter_model.safetensors"))
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    assert lora_b and all(torch.isfinite(t).all() for t in weights.values())
    assert any(t.abs().sum() > 0 for t in lora_b)  # lora_B starts at zero: non-zero means it learned


def test_generator_uses_adapter_and_base(trained, tiny_llm_dir):
    gen = Generator(tiny_llm_dir, "float32")
    msgs = [{"role": "system", "content": "You are the Warden."}, {"role": "user", "content": "Hello!"}]
    cfg = GenerationConfig(max_new_tokens=6)
    base = gen.generate(msgs, cfg)
    gen.add_adapter("warden", trained[0])
    tuned = gen.generate(msgs, cfg, adapter="warden")
    again = gen.generate(msgs, cfg)  # adapter disabled again for characters without one
    assert again.text == base.text
    assert tuned.new_tokens >= 1
    enc = gen._encode(msgs)
    with torch.inference_mode():
        gen.model.set_adapter("warden")
        with_adapter = gen.model(**enc).logits
        with gen.model.disable_adapter():
            without = gen.model(**enc).logits
    assert not torch.allclose(with_adapter, without)  # the adapter really changes what the model says


def test_adapter_for_another_base_is_refused(trained, tmp_path):
    import shutil

    path = tmp_path / "adapter"
    shutil.copytree(trained[0], path)
    manifest = json.loads((path / ADAPTER_MANIFEST).read_text())
    manifest["base"]["fingerprint"] = "0000"
    (path / ADAPTER_MANIFEST).write_text(json.dumps(manifest))
    from tuning.adapters import attach_adapter

    with pytest.raises(AdapterError, match="trained on base model"):
        attach_adapter(torch.nn.Linear(1, 1), "x", path, "1234")
    with pytest.raises(AdapterError, match="not a PEFT adapter"):
        attach_adapter(torch.nn.Linear(1, 1), "x", tmp_path, "1234")


def test_unknown_method_fails_before_loading(tiny_llm_dir, style_file, tmp_path):
    with pytest.raises(ConfigError, match="unknown PEFT method 'lorax'; available: adapter, dora, full, ia3, lora"):
        train_sft(tiny_llm_dir, style_file, tmp_path / "a", SFTRecipe(method="lorax"))
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("method", ["dora", "qlora"])
def test_other_methods_train_and_serve(method, tiny_llm_dir, style_file, tmp_path):
    out = tmp_path / method
    manifest = train_sft(tiny_llm_dir, style_file, out, SFTRecipe(method=method, max_steps=2, batch_size=4))
    assert manifest["method"] == method and math.isfinite(manifest["metrics"]["train_loss"])
    weights = load_file(str(out / "adapter_model.safetensors"))
    assert any(t.abs().sum() > 0 for n, t in weights.items() if "lora_B" in n)
    gen = Generator(tiny_llm_dir, "float32")  # a QLoRA adapter serves on the unquantised base
    gen.add_adapter("x", out)
    assert gen.generate([{"role": "user", "content": "hi"}], GenerationConfig(max_new_tokens=3), "x").new_tokens


def test_gradient_checkpointing_defaults_to_the_methods_that_quantise_and_obeys_the_recipe():
    from tuning.methods import get_method
    from tuning.sft import SFTRecipe, checkpointing

    assert checkpointing(SFTRecipe(method="qlora"), get_method("qlora")) is True
    assert checkpointing(SFTRecipe(method="lora"), get_method("lora")) is False
    assert checkpointing(SFTRecipe(method="lora", gradient_checkpointing=True), get_method("lora")) is True
    assert checkpointing(SFTRecipe(method="qlora", gradient_checkpointing=False), get_method("qlora")) is False
    with pytest.raises(ValueError):
        SFTRecipe(lr_scheduler="warp")
