"""Adapters on disk: a PEFT folder (or a bottleneck-adapter folder, tuning/bottleneck.py) plus `eterna_adapter.json`.
Loading checks the base model's fingerprint; `use_adapter` selects one adapter of either kind for a forward pass.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from retrieval.errors import AdapterError

ADAPTER_MANIFEST = "eterna_adapter.json"


def read_adapter_manifest(path: Path) -> dict:
    from tuning.bottleneck import is_bottleneck_dir

    path = Path(path)
    if not (path / "adapter_config.json").is_file() and not is_bottleneck_dir(path):
        raise AdapterError(f"{path}: not a PEFT adapter (no adapter_config.json, nor a bottleneck "
                           "adapter's bottleneck_config.json); train one with "
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
    """Load the adapter at `path` as `name` onto model (a plain model or a PeftModel); returns the model to use from
    now on (a PeftModel once a PEFT adapter is attached). Select it per forward pass with `use_adapter`."""
    from peft import PeftModel

    from tuning import bottleneck

    path = Path(path)
    check_base(read_adapter_manifest(path), path, fingerprint)
    if bottleneck.is_bottleneck_dir(path):
        host = model.get_base_model() if isinstance(model, PeftModel) else model
        bottleneck.load(host, path, name)
        return model
    if isinstance(model, PeftModel):
        model.load_adapter(str(path), adapter_name=name, is_trainable=False)
        return model
    return PeftModel.from_pretrained(model, str(path), adapter_name=name, is_trainable=False)


@contextlib.contextmanager
def use_adapter(model, name: str | None):
    """Run with adapter `name` active (None: the bare base), whatever its kind: PEFT adapters are switched with
    set_adapter/disable_adapter, bottleneck adapters by their modules' active name. KeyError for an unknown name."""
    from peft import PeftModel

    from tuning import bottleneck

    is_peft = isinstance(model, PeftModel)
    host = model.get_base_model() if is_peft else model
    is_bottleneck = name is not None and name in bottleneck.names(host)
    if name is not None and not is_bottleneck and not (is_peft and name in model.peft_config):
        raise KeyError(name)
    bottleneck.set_active(host, name if is_bottleneck else None)
    try:
        if is_peft and (name is None or is_bottleneck):
            with model.disable_adapter():
                yield model
        else:
            if name is not None:
                model.set_adapter(name)
            yield model
    finally:
        bottleneck.set_active(host, None)


def halve_weights(path: Path, filename: str = "adapter_model.safetensors") -> None:
    """Rewrite an adapter's safetensors in float16 (half the bytes to ship); the loaders cast them back."""
    import os

    from safetensors.torch import load_file, save_file

    path = Path(path)
    weights_path = path / filename
    weights = {k: v.half().contiguous() if v.is_floating_point() else v
               for k, v in load_file(str(weights_path)).items()}
    tmp = weights_path.with_name(f".{filename}.tmp")
    save_file(weights, str(tmp), metadata={"format": "pt"})
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, weights_path)
