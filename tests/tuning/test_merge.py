"""Merge and export of a trained LoRA on the tiny Llama: the merged checkpoint computes what base + adapter
computes, adapters that cannot merge are refused, and the GGUF LoRA reads back with the expected tensors."""

import json

import pytest
import torch

from retrieval.errors import AdapterError
from tuning.base import MODEL_MANIFEST, load_base
from tuning.merge import export_gguf, merge_adapter
from tuning.sft import SFTRecipe, train_sft

MODULES = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


@pytest.fixture(scope="module")
def lora(tmp_path_factory, tiny_llm_dir):
    from tests.fixtures_data import STYLE

    root = tmp_path_factory.mktemp("merge")
    data = root / "style.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in STYLE), encoding="utf-8")
    out = root / "lora"
    train_sft(tiny_llm_dir, data, out, SFTRecipe(max_steps=3, batch_size=4, learning_rate=2e-2,
                                                 params={"r": 4, "alpha": 8}))
    return out, data


def test_merged_model_equals_base_plus_adapter(lora, tiny_llm_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter, _ = lora
    out = tmp_path / "merged"
    manifest = merge_adapter(adapter, out)
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    on_disk = json.loads((out / MODEL_MANIFEST).read_text())
    assert on_disk["built_by"] == "eterna adapters merge" and on_disk["adapter"]["method"] == "lora"
    assert on_disk == json.loads(json.dumps(manifest))

    base, tok = load_base(tiny_llm_dir)
    with_adapter = PeftModel.from_pretrained(base, str(adapter)).eval()
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    ids = tok("Who keeps the gate at night?", return_tensors="pt").input_ids
    with torch.inference_mode():
        expected = with_adapter(ids).logits  # (1, seq, vocab)
        got = merged(ids).logits
        with with_adapter.disable_adapter():
            bare = with_adapter(ids).logits
    assert not torch.allclose(expected, bare, atol=1e-3)  # the adapter matters, so equality below means something
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("method,message", [("prompt", "peft_type PROMPT_TUNING adds virtual tokens"),
                                            ("adapter", "bottleneck adapters add modules"),
                                            ("qlora", "trained as QLoRA.*--allow-qlora")])
def test_unmergeable_adapters_are_refused(method, message, lora, tiny_llm_dir, tmp_path):
    _, data = lora
    adapter = tmp_path / method
    train_sft(tiny_llm_dir, data, adapter, SFTRecipe(method=method, max_steps=1, batch_size=8))
    with pytest.raises(AdapterError, match=message):
        merge_adapter(adapter, tmp_path / "merged")
    assert not (tmp_path / "merged").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    if method == "qlora":  # on request it merges into the full-precision base, and says so
        merge_adapter(adapter, tmp_path / "merged", allow_qlora=True)
        assert json.loads((tmp_path / "merged" / MODEL_MANIFEST).read_text())["adapter"][
            "qlora_merged_full_precision"] is True


def test_four_bit_base_is_refused(lora, tiny_llm_dir, tmp_path):
    import shutil

    from retrieval.fileio import atomic_write_json
    from tuning.base import model_fingerprint

    adapter, _ = lora
    base = tmp_path / "base4"
    shutil.copytree(tiny_llm_dir, base)
    cfg = json.loads((base / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (base / "config.json").write_text(json.dumps(cfg))
    local = tmp_path / "adapter"
    shutil.copytree(adapter, local)
    m = json.loads((local / "eterna_adapter.json").read_text())
    m["base"]["fingerprint"] = model_fingerprint(base)
    atomic_write_json(local / "eterna_adapter.json", m)
    with pytest.raises(AdapterError, match="4-bit checkpoint"):
        merge_adapter(local, tmp_path / "merged", base_dir=base)


def test_export_gguf_reads_back(lora, tmp_path):
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    adapter, _ = lora
    path = export_gguf(adapter, tmp_path / "out" / "lora.gguf")
    reader = gguf.GGUFReader(str(path))
    names = {t.name for t in reader.tensors}
    assert names == {f"blk.{i}.{m}.weight.lora_{ab}" for i in range(2) for m in MODULES for ab in "ab"}
    alpha = reader.get_field(gguf.Keys.Adapter.LORA_ALPHA)
    assert float(alpha.parts[alpha.data[0]][0]) == 8.0
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    a = next(t for t in reader.tensors if t.name == "blk.1.ffn_down.weight.lora_a")
    src = weights["base_model.model.model.layers.1.mlp.down_proj.lora_A.weight"]
    assert np.allclose(np.asarray(a.data).reshape(src.shape), src)  # unpermuted modules keep PEFT's values


def test_export_refuses_non_lora(lora, tiny_llm_dir, tmp_path):
    _, data = lora
    adapter = tmp_path / "ia3"
    train_sft(tiny_llm_dir, data, adapter, SFTRecipe(method="ia3", max_steps=1, batch_size=8))
    with pytest.raises(AdapterError, match="peft_type IA3"):
        export_gguf(adapter, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()
