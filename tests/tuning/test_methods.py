"""Every fine-tuning method trains through `train_sft` on the tiny Llama: the method's own parameters change, and
nothing else does (the artifact holds only them; a full fine-tune changes the weights and keeps the embeddings)."""

import math

import pytest
import torch
from safetensors.torch import load_file

from app.config import GenerationConfig
from app.runtime import Generator
from retrieval.errors import ConfigError
from tuning.methods import available, get_method
from tuning.sft import SFTRecipe, train_sft

FAST = dict(max_steps=3, batch_size=4, learning_rate=2e-2, logging_steps=1)


def _train(method, tiny_llm_dir, style_file, tmp_path, **params):
    out = tmp_path / method
    manifest = train_sft(tiny_llm_dir, style_file, out, SFTRecipe(method=method, params=params, **FAST),
                         system="You are the Warden.")
    assert manifest["method"] == method and math.isfinite(manifest["metrics"]["train_loss"])
    return out, manifest


def test_registry_lists_every_method_and_checks_params():
    assert {"lora", "dora", "qlora", "ia3", "prompt", "prefix", "full"} <= set(available())
    with pytest.raises(ConfigError, match="method 'ia3': params.r: Extra inputs"):
        get_method("ia3").parse({"r": 4})
    with pytest.raises(ConfigError, match="params.num_virtual_tokens"):
        get_method("prompt").parse({"num_virtual_tokens": 0})


@pytest.mark.parametrize("method,marker,init", [("lora", "lora_B", 0.0), ("dora", "lora_B", 0.0),
                                                ("ia3", "ia3_l", 1.0)])
def test_weight_adapters_change_only_their_own_tensors(method, marker, init, tiny_llm_dir, style_file, tmp_path):
    out, manifest = _train(method, tiny_llm_dir, style_file, tmp_path)
    weights = load_file(str(out / "adapter_model.safetensors"))
    base = load_file(str(tiny_llm_dir / "model.safetensors"))
    assert weights and not set(weights) & set(base)  # only adapter tensors are saved
    moved = [t for n, t in weights.items() if marker in n]
    assert moved and any((t - init).abs().max() > 0 for t in moved)  # they left their initial value
    assert 0 < manifest["trainable_parameters"] < sum(t.numel() for t in base.values()) / 10
    gen = Generator(tiny_llm_dir, "float32")
    gen.add_adapter("x", out)
    assert gen.generate([{"role": "user", "content": "hi"}], GenerationConfig(max_new_tokens=3), "x").new_tokens


@pytest.mark.parametrize("method,params,marker", [("prompt", {"num_virtual_tokens": 4, "init_text": "Halt, reader."},
                                                   "prompt_embeddings"),
                                                  ("prefix", {"num_virtual_tokens": 4}, "prefix_encoder")])
def test_prompt_learning_trains_virtual_tokens_only(method, params, marker, tiny_llm_dir, style_file, tmp_path):
    from peft import PeftModel

    from tuning.base import load_base

    out, manifest = _train(method, tiny_llm_dir, style_file, tmp_path, **params)
    weights = load_file(str(out / "adapter_model.safetensors"))
    assert list(weights) and all(marker in n or "prompt_embeddings" in n for n in weights)
    n_virtual = params["num_virtual_tokens"]
    assert manifest["trainable_parameters"] == sum(t.numel() for t in weights.values())
    assert all(t.shape[0] == n_virtual for t in weights.values())
    model, tok = load_base(tiny_llm_dir, "float32")
    if method == "prompt":  # initialised from the text's embeddings, then trained away from them
        ids = tok(params["init_text"], add_special_tokens=False)["input_ids"]
        init = model.get_input_embeddings().weight[torch.tensor((ids * n_virtual)[:n_virtual])]
        assert (next(iter(weights.values())) - init).abs().max() > 1e-4
    peft = PeftModel.from_pretrained(model, str(out))
    enc = tok("hello there", return_tensors="pt")
    with torch.no_grad():
        assert peft(**enc).logits.shape[-1] == model.config.vocab_size


def test_full_fine_tuning_changes_the_weights_but_not_the_embeddings(tiny_llm_dir, style_file, tmp_path):
    out, manifest = _train("full", tiny_llm_dir, style_file, tmp_path)
    assert manifest["kind"] == "full" and (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    before = load_file(str(tiny_llm_dir / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    emb = [n for n in before if "embed_tokens" in n]
    assert emb and all(torch.equal(before[n], after[n]) for n in emb)
    changed = [n for n in before if n not in emb and not torch.equal(before[n], after[n])]
    assert len(changed) == len([n for n in before if n not in emb])  # every other weight trained
    gen = Generator(out, "float32")  # the artifact serves as a base model
    assert gen.generate([{"role": "user", "content": "hi"}], GenerationConfig(max_new_tokens=3)).new_tokens
