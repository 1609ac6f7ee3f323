"""Adapters on disk: a PEFT folder (or a bottleneck-adapter folder, tuning/bottleneck.py) plus `eterna_adapter.json`.
Loading checks the base model's fingerprint; `use_adapter` selects one adapter of either kind for a forward pass.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from retrieval.errors import AdapterError
from tuning.kinds import attachable_kinds, kind_for_dir

ADAPTER_MANIFEST = "eterna_adapter.json"


def read_adapter_manifest(path: Path) -> dict:
    path = Path(path)
    if not any(kind.holds(path, None) for kind in attachable_kinds()):
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
    path = Path(path)
    manifest = read_adapter_manifest(path)
    check_base(manifest, path, fingerprint)
    return kind_for_dir(path, manifest).attach(model, name, path)


@contextlib.contextmanager
def use_adapter(model, name: str | None):
    """Run with adapter `name` active (None: the bare base), whatever its kind: each attachable kind (tuning.kinds)
    activates `name` when it holds it and turns its own adapters off otherwise (PEFT: set_adapter/disable_adapter;
    bottleneck: its modules' active name). KeyError for an unknown name."""
    kinds = attachable_kinds()
    owner = None if name is None else next((k for k in kinds if k.attached(model, name)), None)
    if name is not None and owner is None:
        raise KeyError(name)
    with contextlib.ExitStack() as stack:
        for kind in kinds:
            stack.enter_context(kind.active(model, name if kind is owner else None))
        yield model


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


def name_base_in_peft_config(folder: Path, base: dict) -> None:
    """PEFT's `adapter_config.json` names its base by the folder it was trained from (a cache path of the training
    machine); rewrite it to the base's hub id (what vLLM and SGLang expect) or its spec (base_reference)."""
    import json

    from retrieval.fileio import atomic_write_json

    cfg_file = Path(folder) / "adapter_config.json"
    if not cfg_file.is_file():
        return
    cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    name = base.get("hub_id") or base.get("spec")
    if name and cfg.get("base_model_name_or_path") != name:
        cfg["base_model_name_or_path"] = name
        atomic_write_json(cfg_file, cfg)


SHIPPED = "shipped"  # manifest entry added by ship_adapter: how the shipped weights differ from the trained ones


def _weights_file(path: Path) -> Path:
    return Path(path) / kind_for_dir(path).weights


def _float_dtypes(weights: Path) -> list[str]:
    from safetensors import safe_open

    names = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}
    with safe_open(str(weights), framework="pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    return sorted(names.get(d, d) for d in dtypes)


SCALED = "scaled"  # the manifest's record of `scale_adapter`


def _copy_own_files(src: Path, dst: Path, skip: tuple[str, ...]) -> None:
    """Copy the adapter folder's files into `dst`, but hidden leftovers and the names in `skip`."""
    import shutil

    for f in sorted(src.iterdir()):
        if f.is_file() and not f.name.startswith(".") and f.name not in skip:
            shutil.copy2(f, dst / f.name)


def scale_adapter(src: Path, dst: Path, factor: float, *, by: str = "eterna adapters scale") -> dict:
    """Copy the LoRA adapter at `src` to `dst` with its strength multiplied by `factor`: `lora_alpha` (and every
    `alpha_pattern` entry) times `factor`, so W + factor x (alpha/r) B A on every backend that reads the adapter
    (PEFT, the batched backend, llama.cpp's GGUF LoRA, vLLM), the weights untouched. The manifest gains a `scaled`
    entry (the factor, the product of every scaling so far, the source's alpha). Staged, fsynced, renamed."""
    import math

    from retrieval.fileio import atomic_write_json, replace_dir, staging
    from tuning.base import portable_path

    src, dst = Path(src), Path(dst)
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and 0 < factor <= 4):
        raise AdapterError(f"--factor {factor}: the strength factor must be a number in (0, 4] (1 keeps it)")
    manifest = read_adapter_manifest(src)
    cfg_path = src / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
    if str(cfg.get("peft_type", "")).upper() not in ("LORA",) or "lora_alpha" not in cfg:
        raise AdapterError(f"{cfg_path}: peft_type {cfg.get('peft_type')!r} has no lora_alpha to scale; only LoRA "
                           "(and QLoRA, rsLoRA) adapters scale (retrain another method with a smaller rank or fewer "
                           "steps instead)")
    if src.resolve() == dst.resolve():
        raise AdapterError(f"{src}: the source and the scaled copy are the same folder; pass another --out")
    old = cfg["lora_alpha"]
    cfg["lora_alpha"] = old * factor
    cfg["alpha_pattern"] = {k: v * factor for k, v in (cfg.get("alpha_pattern") or {}).items()}
    with staging(dst, "scale") as work:
        staged = work / dst.name
        staged.mkdir()
        _copy_own_files(src, staged, skip=(ADAPTER_MANIFEST, cfg_path.name))
        atomic_write_json(staged / cfg_path.name, cfg)
        if manifest.get("data", {}).get("path"):  # no path of the training machine travels (the hash names the data)
            path = portable_path(manifest["data"]["path"])
            manifest["data"]["path"] = Path(path).name if Path(path).is_absolute() else path
        previous = manifest.get(SCALED, {})
        manifest[SCALED] = {"by": by, "factor": factor, "total_factor": previous.get("total_factor", 1.0) * factor,
                            "lora_alpha": cfg["lora_alpha"], "trained_lora_alpha": previous.get("trained_lora_alpha",
                                                                                                old)}
        atomic_write_json(staged / ADAPTER_MANIFEST, manifest)
        replace_dir(staged, dst)
    return manifest


def ship_adapter(src: Path, dst: Path, *, by: str = "eterna adapters ship") -> dict:
    """Copy the trained adapter at `src` to `dst` with its weights halved to float16 (half the bytes to ship).

    The manifest keeps everything that says what built the adapter (base, data hash, recipe, system prompt,
    metrics) and gains a `shipped` entry: the dtype the weights had and have, who halved them, the source's hashes.
    Written into a staging folder beside `dst`, fsynced, renamed. Returns the shipped manifest."""
    from retrieval.fileio import atomic_write_json, replace_dir, sha256_file, staging

    src, dst = Path(src), Path(dst)
    manifest = read_adapter_manifest(src)
    weights = _weights_file(src)
    if not weights.is_file():
        raise AdapterError(f"{weights} is missing; ship_adapter ships safetensors weights (retrain with "
                           "`eterna train sft`)")
    before = _float_dtypes(weights)
    with staging(dst, "ship") as work:
        staged = work / dst.name
        staged.mkdir()
        _copy_own_files(src, staged, skip=("README.md", ADAPTER_MANIFEST))  # not the model card
        halve_weights(staged, weights.name)
        out = staged / weights.name
        from tuning.base import portable_base, portable_path

        manifest["base"] = portable_base(manifest.get("base", {}))  # no path of the training machine is shipped
        if manifest.get("data", {}).get("path"):
            manifest["data"]["path"] = portable_path(manifest["data"]["path"])
        name_base_in_peft_config(staged, manifest["base"])
        previous = manifest.get(SHIPPED, {})
        manifest[SHIPPED] = {
            "by": by,
            "weights": weights.name,
            "dtype": "float16",
            "trained_dtype": previous.get("trained_dtype") or ",".join(before),
            "bytes": out.stat().st_size,
            "trained_bytes": previous.get("trained_bytes") or weights.stat().st_size,
            "trained_sha256": previous.get("trained_sha256") or sha256_file(weights)[:16],
        }
        atomic_write_json(staged / ADAPTER_MANIFEST, manifest)
        replace_dir(staged, dst)
    return manifest


def manifest_problems(manifest: dict, path: Path, *, npc: str | None = None, data: Path | None = None,
                      system: str | None = None, fingerprint: str | None = None) -> list[str]:
    """What no longer matches between an adapter's manifest and the project: its training data (`data`, hashed as
    tuning.data.data_fingerprint does), the system prompt the config builds now (`system`), the base model
    (`fingerprint`). Each problem names the adapter and the fix; checks whose argument is None are skipped."""
    from tuning.data import data_fingerprint

    who = npc or manifest.get("npc") or "NPC"
    retrain = (f"retrain it (`eterna train sft --npc {who}`, then `eterna adapters ship` if it is a shipped "
               "copy)")
    problems = []
    if data is not None:
        had = manifest.get("data", {}).get("sha256")
        now = data_fingerprint(data) if Path(data).is_file() else "missing"
        if had != now:
            problems.append(f"{path}: trained on data sha256 {had} but {data} is now {now}; {retrain}")
    if system is not None and manifest.get("system") is not None and manifest["system"] != system:
        problems.append(f"{path}: trained with another system prompt than the one the config builds now for "
                        f"{who} (persona, style, name or prompts.system changed), so its voice is detuned; "
                        f"{retrain}, or restore the prompt")
    if fingerprint is not None:
        try:
            check_base(manifest, path, fingerprint)
        except AdapterError as e:
            problems.append(str(e))
    return problems
