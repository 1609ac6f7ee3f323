"""Merging a trained adapter into its base: one plain checkpoint that serves with zero adapter overhead.

    manifest = merge_adapter("adapters/guard", "models/guard-merged")           # base: the adapter's own
    lora_to_gguf(...)  # the other export, a GGUF LoRA for llama.cpp, lives in tuning/export.py

PEFT's `merge_and_unload` folds W + (alpha/r) B A (LoRA, DoRA) or the IA3 rescaling into the base weights. Soft
prompts and prefixes add tokens rather than weights, and bottleneck adapters add modules: they cannot be merged
and are refused. An adapter trained as QLoRA learned against NF4-rounded weights; merged into the full-precision
base it behaves slightly differently from the training model, so it is refused unless `allow_qlora`. A 4-bit base
is refused (its weights cannot absorb the delta without re-rounding it). The output is written in a staging folder
(safetensors, tokenizer, `eterna_model.json` naming the base and the adapter) and renamed into place; it serves as
`models.llm`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from retrieval.errors import AdapterError
from retrieval.fileio import atomic_write_json, fingerprint_dir, replace_dir, staging
from tuning.adapters import check_base, read_adapter_manifest
from tuning.base import MODEL_MANIFEST, load_base, model_fingerprint, portable_base, portable_path, resolve_base
from tuning.kinds import kind_for_dir


def mergeable(adapter_dir: Path, manifest: dict) -> str | None:
    """None when the adapter at `adapter_dir` can be merged into its base; otherwise why not (its kind says)."""
    return kind_for_dir(adapter_dir, manifest).mergeable(adapter_dir)


def _four_bit(base_dir: Path) -> bool:
    cfg = json.loads((Path(base_dir) / "config.json").read_text(encoding="utf-8"))
    q = cfg.get("quantization_config") or {}
    return bool(q.get("load_in_4bit") or q.get("bits") == 4 or q.get("quant_method") in ("gptq", "awq"))


def _base_dir(adapter_dir: Path, manifest: dict, base_dir: Path | None, cache_dir: Path) -> Path:
    base = Path(base_dir) if base_dir else resolve_base(manifest.get("base", {}), cache_dir)
    if base is None or not (base / "config.json").is_file():
        spec = manifest.get("base", {}).get("spec")
        raise AdapterError(f"{adapter_dir}: its base {str(base or spec)!r} is not a checkpoint folder here; pass "
                           "--base DIR (the model it was trained on)")
    check_base(manifest, adapter_dir, model_fingerprint(base))
    return base


def merge_adapter(adapter_dir: Path, out_dir: Path, *, base_dir: Path | None = None, allow_qlora: bool = False,
                  dtype: str = "float32", log: bool = False, cache_dir: Path = Path(".eterna/models")) -> dict:
    """Merge the adapter into its base and write a full checkpoint to out_dir. Returns the manifest written."""
    import torch

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    manifest = read_adapter_manifest(adapter_dir)
    base_dir = _base_dir(adapter_dir, manifest, base_dir, cache_dir)
    kind = kind_for_dir(adapter_dir, manifest)
    reason = kind.mergeable(adapter_dir)
    if reason:
        raise AdapterError(f"{adapter_dir}: cannot merge: {reason}")
    if _four_bit(base_dir):
        raise AdapterError(f"{base_dir} is a 4-bit checkpoint; merging would re-round the adapter's delta. Merge "
                           "into the full-precision base (--base DIR)")
    if manifest.get("method") == "qlora":
        if not allow_qlora:
            raise AdapterError(f"{adapter_dir} was trained as QLoRA against a 4-bit base; merged into the "
                               "full-precision base it behaves slightly differently. Serve it as an adapter, or pass "
                               "--allow-qlora to merge anyway")
        if log:
            print(f"warning: {adapter_dir} is a QLoRA adapter merged into the full-precision base", file=sys.stderr)
    model, tok = load_base(base_dir, "float32")
    merged = kind.merge(model, adapter_dir)
    if dtype != "float32":
        merged = merged.to({"float16": torch.float16, "bfloat16": torch.bfloat16}[dtype])
    with staging(out_dir, "merge") as work:
        merged.save_pretrained(work)
        tok.save_pretrained(work)
        out = {"built_by": "eterna adapters merge", "fingerprint": fingerprint_dir(work), "dtype": dtype,
               "parameters": sum(p.numel() for p in merged.parameters()),
               "base": portable_base(manifest.get("base", {})),
               "adapter": {"path": portable_path(adapter_dir), "fingerprint": fingerprint_dir(adapter_dir),
                           "method": manifest.get("method"), "npc": manifest.get("npc"),
                           "data_sha256": manifest.get("data", {}).get("sha256"),
                           "qlora_merged_full_precision": manifest.get("method") == "qlora"},
               "system": manifest.get("system")}
        atomic_write_json(work / MODEL_MANIFEST, out)
        replace_dir(work, out_dir)
    return out


def export_gguf(adapter_dir: Path, out_path: Path, *, base_dir: Path | None = None,
                cache_dir: Path = Path(".eterna/models")) -> Path:
    """The adapter as a GGUF LoRA for llama.cpp (tuning/export.py), after checking it belongs to the base."""
    from tuning.export import lora_to_gguf

    adapter_dir = Path(adapter_dir)
    manifest = read_adapter_manifest(adapter_dir)
    base_dir = _base_dir(adapter_dir, manifest, base_dir, cache_dir)
    return lora_to_gguf(adapter_dir, base_dir, Path(out_path))
