"""Adapters on disk: a PEFT folder plus `eterna_adapter.json`. Loading checks the base model's fingerprint."""

from __future__ import annotations

import json
from pathlib import Path

from retrieval.errors import AdapterError

ADAPTER_MANIFEST = "eterna_adapter.json"


def read_adapter_manifest(path: Path) -> dict:
    path = Path(path)
    if not (path / "adapter_config.json").is_file():
        raise AdapterError(f"{path}: not a PEFT adapter (no adapter_config.json); train one with "
                           "`eterna train sft --npc ID`")
    manifest_path = path / ADAPTER_MANIFEST
    if not manifest_path.is_file():
        raise AdapterError(f"{path}: no {ADAPTER_MANIFEST}; Eterna only loads adapters whose manifest names "
                           "the base model they were trained on")
    try:
        return json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise AdapterError(f"{manifest_path}:{e.lineno}: invalid JSON ({e.msg})") from None


def check_base(manifest: dict, path: Path, fingerprint: str) -> None:
    trained_on = manifest.get("base", {}).get("fingerprint")
    if trained_on != fingerprint:
        raise AdapterError(f"{path} was trained on base model {manifest.get('base', {}).get('spec')!r} "
                           f"(fingerprint {trained_on}) but the engine runs fingerprint {fingerprint}; "
                           "retrain it on this base or change models.llm")


def attach_adapter(model, name: str, path: Path, fingerprint: str):
    """Load the adapter at `path` as `name` onto model (a plain model or a PeftModel); returns the PeftModel."""
    from peft import PeftModel

    path = Path(path)
    check_base(read_adapter_manifest(path), path, fingerprint)
    if isinstance(model, PeftModel):
        model.load_adapter(str(path), adapter_name=name, is_trainable=False)
        return model
    return PeftModel.from_pretrained(model, str(path), adapter_name=name, is_trainable=False)


def halve_weights(path: Path) -> None:
    """Rewrite an adapter's safetensors in float16 (half the bytes to ship); PEFT casts them back on load."""
    import os

    from safetensors.torch import load_file, save_file

    path = Path(path)
    weights_path = path / "adapter_model.safetensors"
    weights = {k: v.half().contiguous() if v.is_floating_point() else v
               for k, v in load_file(str(weights_path)).items()}
    tmp = weights_path.with_name(".adapter_model.safetensors.tmp")
    save_file(weights, str(tmp), metadata={"format": "pt"})
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, weights_path)
