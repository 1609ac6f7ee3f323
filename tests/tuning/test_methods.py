"""Every fine-tuning method trains through `train_sft` on the tiny Llama: the method's own parameters change, and
nothing else does (the artifact holds only them; a full fine-tune changes the weights and keeps the embeddings)."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from app.config import GenerationConfig
from app.backends.transformers import Generator
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
    assert {"lora", "dora", "qlora", "ia3", "prompt", "prefix", "adapter", "full"} <= set(available())
    with pytest.raises(ConfigError, match="method 'ia3': params.r: Extra inputs"):
        get_method("ia3").parse({"r": 4})
    with pytest.raises(ConfigError, match="params.num_virtual_tokens"):
        get_method("prompt").parse({"num_virtual_tokens": 0})
    with pytest.raises(ConfigError, match="params.nonlinearity"):
        get_method("adapter").parse({"nonlinearity": "softmax"})


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


def _lm_loss(model, enc):
    return model(**enc, labels=enc["input_ids"]).loss


def test_bottleneck_adapter_trains_alone_starts_as_identity_and_round_trips(tiny_llm_dir, tmp_path):
    from tuning import bottleneck
    from tuning.base import load_base

    torch.manual_seed(0)
    model, tok = load_base(tiny_llm_dir)
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    enc = tok(["Halt. Who goes there?", "Move along, reader."], return_tensors="pt", padding=True)
    with torch.no_grad():
        base_logits = model(**enc).logits  # (2, T, V)
    model.requires_grad_(False)
    cfg = get_method("adapter").parse({"r": 4, "positions": ["attn", "mlp"], "layers": [1]}).model_dump()
    n = bottleneck.install(model, "default", cfg)
    assert n == 2 * (2 * 4 * 64 + 4 + 64)  # two sites of layer 1: down (4x64) + up (64x4) + biases
    bottleneck.set_active(model, "default")
    with torch.no_grad():
        assert torch.equal(model(**enc).logits, base_logits)  # zero-initialised up-projection: the identity
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sum(p.numel() for p in trainable) == n
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        _lm_loss(model, enc).backward()
        opt.step()
    state = model.state_dict()
    assert all(torch.equal(base_state[k], state[k]) for k in base_state)  # base weights identical
    trained = bottleneck.state_dict(model, "default")
    assert sorted({k.split(".", 3)[3] for k in trained}) == ["down_bias", "down_weight", "up_bias", "up_weight"]
    assert {k.rsplit(".", 1)[0] for k in trained} == {"layers.1.attn", "layers.1.mlp"}
    assert all(trained[k].abs().max() > 0 for k in trained if "up_" in k)  # left their zero init
    with torch.no_grad():
        tuned_logits = model(**enc).logits
        bottleneck.set_active(model, None)
        assert torch.equal(model(**enc).logits, base_logits)  # switched off: the base again
    assert not torch.allclose(tuned_logits, base_logits)

    bottleneck.save(model, "default", tmp_path / "bn", cfg)
    fresh, _ = load_base(tiny_llm_dir)
    bottleneck.load(fresh, tmp_path / "bn", "npc")
    bottleneck.set_active(fresh, "npc")
    with torch.no_grad():
        assert torch.allclose(fresh(**enc).logits, tuned_logits, atol=1e-6)  # the saved adapter reproduces them
    assert not any(p.requires_grad for n, p in fresh.named_parameters() if "eterna_bottlenecks" in n)
    with pytest.raises(ConfigError, match="params.layers"):
        bottleneck.install(fresh, "x", {**cfg, "layers": [5]})


def test_bottleneck_adapter_through_sft_serves_next_to_a_lora(tiny_llm_dir, style_file, tmp_path):
    from tuning.base import load_base

    out, manifest = _train("adapter", tiny_llm_dir, style_file, tmp_path, r=4)
    assert manifest["kind"] == "bottleneck" and manifest["recipe"]["params"]["positions"] == ["mlp"]
    cfg = json.loads((out / "bottleneck_config.json").read_text())
    assert cfg["layers"] == [0, 1] and cfg["r"] == 4 and not (out / "adapter_config.json").exists()
    weights = load_file(str(out / "bottleneck_model.safetensors"))
    assert manifest["trainable_parameters"] == sum(t.numel() for t in weights.values())
    assert any(t.abs().max() > 0 for k, t in weights.items() if "up_weight" in k)
    lora, _ = _train("lora", tiny_llm_dir, style_file, tmp_path, r=4)
    gen = Generator(tiny_llm_dir, "float32")  # one model, both kinds of adapter, switched per turn
    gen.add_adapter("bn", out)
    gen.add_adapter("lora", lora)
    enc = gen._encode([{"role": "user", "content": "hi"}])
    seen = []
    with torch.no_grad():
        for name in ("bn", "lora", None, "bn"):
            with gen._adapter_context(name):
                seen.append(gen.model(**enc).logits)
        bn, lora_logits, bare, bn_again = seen
        assert torch.equal(bare, load_base(tiny_llm_dir)[0](**enc).logits) and torch.equal(bn, bn_again)
    assert not any(torch.allclose(a, b) for a, b in ((bn, bare), (lora_logits, bare), (bn, lora_logits)))
    assert gen.generate([{"role": "user", "content": "hi"}], GenerationConfig(max_new_tokens=3), "bn").new_tokens
    from tuning.export import lora_gguf_support

    assert "bottleneck" in lora_gguf_support(out, {"model_type": "llama"})  # llama.cpp falls back to transformers
