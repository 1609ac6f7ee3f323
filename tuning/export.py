"""Export: a PEFT LoRA adapter as a GGUF LoRA that llama.cpp applies on the same base (`llama_adapter_lora_init`).

Follows llama.cpp's `convert_lora_to_gguf.py` for the layouts we serve: tensor names through gguf's name map
(`model.layers.3.self_attn.q_proj` -> `blk.3.attn_q`), `lora_a`/`lora_b` kept in PEFT's shapes, the alpha in the
header, and the llama family's rotary permutation applied to the rows of B for q and k (llama.cpp stores q/k
permuted; LoRA's delta B @ A must be permuted the same way). Adapters llama.cpp cannot apply (DoRA, rsLoRA scaling,
IA3, prompt/prefix tuning, bottleneck adapters) raise `AdapterError` naming the reason, so the runtime can fall back.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from retrieval.errors import AdapterError
from retrieval.fileio import fingerprint_dir
from tuning.kinds import kind_for_dir

# transformers model_type -> (gguf architecture, permute q/k rows)
_ARCHES = {"llama": ("LLAMA", True), "mistral": ("LLAMA", True), "qwen2": ("QWEN2", False),
           "qwen3": ("QWEN3", False), "gemma": ("GEMMA", False), "phi3": ("PHI3", False)}
GGUF_LORA_MANIFEST = "eterna_gguf_lora.json"


def _permute(w, n_head: int, n_head_kv: int | None):
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def lora_gguf_support(adapter_dir: Path, base_config: dict) -> str | None:
    """None when llama.cpp can apply this adapter on this base; otherwise the reason it cannot."""
    reason = kind_for_dir(adapter_dir).gguf_support(adapter_dir)
    if reason:
        return reason
    if base_config.get("model_type") not in _ARCHES:
        return f"base model type {base_config.get('model_type')!r} is not mapped to a GGUF architecture"
    return None


def lora_to_gguf(adapter_dir: Path, base_dir: Path, out_path: Path) -> Path:
    """Write `adapter_dir` (a PEFT LoRA) as a GGUF LoRA at `out_path` (temp file, fsync, rename)."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    adapter_dir, out_path = Path(adapter_dir), Path(out_path)
    base = json.loads((Path(base_dir) / "config.json").read_text(encoding="utf-8"))
    reason = lora_gguf_support(adapter_dir, base)
    if reason:
        raise AdapterError(f"{adapter_dir}: cannot run in llama.cpp: {reason}")
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    weights_path = adapter_dir / "adapter_model.safetensors"
    if not weights_path.is_file():
        raise AdapterError(f"{weights_path} is missing; save the adapter with safetensors")
    arch_name, permute = _ARCHES[base["model_type"]]
    arch = getattr(gguf.MODEL_ARCH, arch_name)
    n_layers = int(base["num_hidden_layers"])
    n_head, n_kv = int(base["num_attention_heads"]), int(base.get("num_key_value_heads") or base["num_attention_heads"])
    names = gguf.get_tensor_name_map(arch, n_layers)
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for name, t in load_file(str(weights_path)).items():
        if ".lora_A." in name:
            part = "a"
        elif ".lora_B." in name:
            part = "b"
        else:
            raise AdapterError(f"{weights_path}: tensor {name!r} is not a LoRA A/B matrix; llama.cpp cannot apply it")
        module = name.split(".lora_")[0].removeprefix("base_model.model.")
        pairs.setdefault(module, {})[part] = t.astype(np.float32)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", dir=out_path.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, gguf.MODEL_ARCH_NAMES[arch])
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(cfg["lora_alpha"]))
        for module, ab in sorted(pairs.items()):
            if set(ab) != {"a", "b"}:
                raise AdapterError(f"{weights_path}: {module} has only lora_{''.join(ab).upper()}")
            dest = names.get_name(module)
            if dest is None:
                raise AdapterError(f"{weights_path}: no GGUF tensor for module {module!r}")
            a, b = ab["a"], ab["b"]
            if permute and module.endswith("q_proj"):
                b = _permute(b, n_head, n_head)
            elif permute and module.endswith("k_proj"):
                b = _permute(b, n_head, n_kv)
            writer.add_tensor(dest + ".weight.lora_a", np.ascontiguousarray(a))
            writer.add_tensor(dest + ".weight.lora_b", np.ascontiguousarray(b))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out_path


def cached_gguf_lora(adapter_dir: Path, base_dir: Path, cache_dir: Path) -> Path:
    """The GGUF form of `adapter_dir`, converted once and cached by the adapter's content fingerprint."""
    adapter_dir = Path(adapter_dir)
    key = fingerprint_dir(adapter_dir)[:16]
    out = Path(cache_dir) / f"{adapter_dir.name}-{key}.gguf"
    if not out.is_file():
        lora_to_gguf(adapter_dir, base_dir, out)
    return out


# vLLM's `--max-lora-rank` takes one of these values (an adapter's rank must not exceed the server's), and the
# modules it applies LoRA to in Llama-family models (q/k/v packed as qkv_proj, gate/up as gate_up_proj)
VLLM_MAX_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
VLLM_LLAMA_LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def vllm_lora_problem(adapter_dir: Path) -> str | None:
    """None when vLLM (and SGLang, same limits) can serve this PEFT adapter on a Llama-family base; else why not."""
    cfg_file = Path(adapter_dir) / "adapter_config.json"
    if not cfg_file.is_file():
        return f"{cfg_file} is missing: vLLM serves PEFT LoRA folders only (not this adapter's kind)"
    cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    if cfg.get("peft_type") != "LORA" or cfg.get("use_dora"):
        return (f"peft_type {cfg.get('peft_type')}{' with DoRA' if cfg.get('use_dora') else ''}: vLLM serves plain "
                "LoRA adapters only (retrain with --method lora)")
    r = int(cfg.get("r", 0))
    if not 1 <= r <= VLLM_MAX_LORA_RANKS[-1]:
        return f"rank r={r}: vLLM serves LoRA ranks up to {VLLM_MAX_LORA_RANKS[-1]} (--max-lora-rank)"
    modules = cfg.get("target_modules") or []
    modules = [modules] if isinstance(modules, str) else list(modules)
    bad = sorted(set(modules) - set(VLLM_LLAMA_LORA_MODULES))
    if bad or not modules:
        return (f"target modules {bad or modules}: vLLM applies LoRA to {', '.join(VLLM_LLAMA_LORA_MODULES)} of "
                "Llama-family models only (retrain with those targets)")
    if cfg.get("modules_to_save"):
        return f"modules_to_save {cfg['modules_to_save']}: vLLM does not load fully trained extra modules"
    return None


def vllm_max_lora_rank(r: int) -> int:
    """The smallest `--max-lora-rank` value vLLM accepts that serves rank `r`."""
    return next(v for v in VLLM_MAX_LORA_RANKS if v >= r)
