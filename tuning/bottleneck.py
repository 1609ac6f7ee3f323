"""Bottleneck adapters (Houlsby et al., 2019): h + up(f(down(h))) on the output of each decoder layer's MLP.

    install(model, "default", {"r": 16, "nonlinearity": "gelu", "positions": ["mlp"], "layers": None})
    save(model, "default", staged)                       # bottleneck_config.json + bottleneck_model.safetensors
    load(model, adapter_dir, "guard"); set_active(model, "guard")

PEFT has no activation-bottleneck tuner (its LoRA-family methods add weight deltas; PEANuT's network acts on the
weights, not on the hidden states), so this module owns one. Each adapted module (`layers.N.mlp`, optionally
`layers.N.self_attn`: Houlsby's two sites) gets a forward hook and an `eterna_bottlenecks` ModuleDict holding one
block per named adapter; the module's `_eterna_active` attribute selects which block (if any) runs. The hook is a
module-level function that reads everything from the module it is called on, so a deep copy of the model (a
reference model) keeps its own blocks. Modules keep their paths, so PEFT adapters attached to the same model still
find their layers; the projections are bare parameters, not nn.Linear, so "all-linear" LoRA never targets them.
The up-projection starts at zero: an untrained adapter returns the base model's output exactly.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from retrieval.errors import AdapterError, ConfigError
from retrieval.fileio import atomic_write_json

BOTTLENECK_CONFIG = "bottleneck_config.json"
BOTTLENECK_WEIGHTS = "bottleneck_model.safetensors"
_SITE = re.compile(r"(?:^|\.)layers\.(\d+)\.(mlp|self_attn)$")
_POSITIONS = {"mlp": "mlp", "attn": "self_attn"}
_ACT = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "tanh": torch.tanh}


class Bottleneck(nn.Module):
    """One site's adapter: h + up(f(down(h))); hidden size d, bottleneck size r."""

    def __init__(self, d: int, r: int, nonlinearity: str):
        super().__init__()
        self.nonlinearity = nonlinearity
        down = nn.Linear(d, r)  # borrowed for nn.Linear's default (Kaiming-uniform) initialisation
        self.down_weight = nn.Parameter(down.weight.detach().clone())  # (r, d)
        self.down_bias = nn.Parameter(torch.zeros(r))  # (r,)
        self.up_weight = nn.Parameter(torch.zeros(d, r))  # (d, r): zero, so the block starts as the identity
        self.up_bias = nn.Parameter(torch.zeros(d))  # (d,)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # h: (..., d)
        dt = h.dtype  # the blocks keep float32 weights; a bfloat16 base computes them in bfloat16
        z = _ACT[self.nonlinearity](F.linear(h, self.down_weight.to(dt), self.down_bias.to(dt)))  # (..., r)
        return h + F.linear(z.to(dt), self.up_weight.to(dt), self.up_bias.to(dt))  # (..., d)


def _hook(module: nn.Module, args, output):
    name = getattr(module, "_eterna_active", None)
    if name is None or name not in module.eterna_bottlenecks:
        return output
    block = module.eterna_bottlenecks[name]
    if isinstance(output, tuple):  # attention returns (hidden states, attention weights)
        return (block(output[0]), *output[1:])
    return block(output)


def _sites(model: nn.Module) -> dict[tuple[int, str], nn.Module]:
    """{(layer index, "mlp" | "attn"): module} of a decoder-only transformers model."""
    found = {}
    for path, module in model.named_modules():
        m = _SITE.search(path)
        if m:
            found[(int(m.group(1)), "attn" if m.group(2) == "self_attn" else "mlp")] = module
    return found


def hidden_size(model: nn.Module) -> int:
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return int(cfg.hidden_size)


def install(model: nn.Module, name: str, cfg: dict, *, trainable: bool = True) -> int:
    """Add adapter `name` (cfg: r, nonlinearity, positions, layers) to model; returns its parameter count."""
    sites = _sites(model)
    n_layers = 1 + max((i for i, _ in sites), default=-1)
    if not n_layers:
        raise ConfigError(f"{type(model).__name__}: no `layers.N.mlp` modules found; the bottleneck adapter needs "
                          "a decoder-only transformers model (Llama, Qwen, Mistral, ...); use method lora")
    layers = cfg.get("layers")
    layers = list(range(n_layers)) if layers is None else sorted(set(layers))
    if any(i < 0 or i >= n_layers for i in layers):
        raise ConfigError(f"method 'adapter': params.layers {layers}: this model has layers 0-{n_layers - 1}; "
                          "list indices in that range or omit layers")
    d = hidden_size(model)
    ref = next(model.parameters())
    count = 0
    for i in layers:
        for pos in cfg["positions"]:
            module = sites.get((i, pos))
            if module is None:
                raise ConfigError(f"method 'adapter': layer {i} has no {_POSITIONS[pos]} module; "
                                  f"set params.positions to [\"mlp\"]")
            if not hasattr(module, "eterna_bottlenecks"):
                module.eterna_bottlenecks = nn.ModuleDict()
                module._eterna_active = None
                module.register_forward_hook(_hook)
            if name in module.eterna_bottlenecks:
                raise AdapterError(f"bottleneck adapter {name!r} is already attached; pick another name")
            block = Bottleneck(d, int(cfg["r"]), cfg["nonlinearity"]).to(device=ref.device)
            block.requires_grad_(trainable)
            module.eterna_bottlenecks[name] = block
            count += sum(p.numel() for p in block.parameters())
    return count


def names(model: nn.Module) -> set[str]:
    return {n for m in model.modules() if hasattr(m, "eterna_bottlenecks") for n in m.eterna_bottlenecks}


def set_active(model: nn.Module, name: str | None) -> None:
    for m in model.modules():
        if hasattr(m, "eterna_bottlenecks"):
            m._eterna_active = name


def state_dict(model: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """{"layers.N.mlp.up_weight": tensor, ...}: adapter `name`'s parameters under model-independent keys."""
    out = {}
    for (i, pos), module in sorted(_sites(model).items()):
        blocks = getattr(module, "eterna_bottlenecks", {})
        if name in blocks:
            for key, t in blocks[name].state_dict().items():
                out[f"layers.{i}.{pos}.{key}"] = t.detach().float().cpu().contiguous()
    return out


def save(model: nn.Module, name: str, out_dir: Path, cfg: dict) -> None:
    """Write adapter `name` to out_dir: its config (with the layers it covers) and its weights (safetensors)."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = state_dict(model, name)
    if not weights:
        raise AdapterError(f"no bottleneck adapter named {name!r} on this model")
    layers = sorted({int(k.split(".")[1]) for k in weights})
    save_file(weights, str(out_dir / BOTTLENECK_WEIGHTS), metadata={"format": "pt"})
    atomic_write_json(out_dir / BOTTLENECK_CONFIG, {
        "eterna_type": "bottleneck", "format": 1, "r": int(cfg["r"]), "nonlinearity": cfg["nonlinearity"],
        "positions": list(cfg["positions"]), "layers": layers, "hidden_size": hidden_size(model),
        "base_model_type": getattr(model.config, "model_type", None)})


def is_bottleneck_dir(path: Path) -> bool:
    return (Path(path) / BOTTLENECK_CONFIG).is_file()


def read_config(path: Path) -> dict:
    cfg_path = Path(path) / BOTTLENECK_CONFIG
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise AdapterError(f"{cfg_path}:{e.lineno}: invalid JSON ({e.msg}); retrain the adapter") from None
    missing = {"r", "nonlinearity", "positions", "layers", "hidden_size"} - set(cfg)
    if missing or cfg.get("nonlinearity") not in _ACT:
        raise AdapterError(f"{cfg_path}: not a bottleneck adapter config (missing {sorted(missing)} or unknown "
                           f"nonlinearity); retrain the adapter")
    return cfg


def load(model: nn.Module, path: Path, name: str, *, trainable: bool = False) -> dict:
    """Attach the adapter saved at `path` to model as `name` (inactive until `set_active`); returns its config."""
    from safetensors.torch import load_file

    path = Path(path)
    cfg = read_config(path)
    if cfg["hidden_size"] != hidden_size(model):
        raise AdapterError(f"{path}: trained for hidden size {cfg['hidden_size']}, this model has "
                           f"{hidden_size(model)}; retrain it on this base")
    install(model, name, cfg, trainable=trainable)
    weights = load_file(str(path / BOTTLENECK_WEIGHTS))
    sites = _sites(model)
    ref = next(model.parameters())
    expected = set(state_dict(model, name))
    if set(weights) != expected:
        raise AdapterError(f"{path / BOTTLENECK_WEIGHTS}: tensors {sorted(set(weights) ^ expected)[:3]} do not "
                           f"match {BOTTLENECK_CONFIG}; retrain the adapter")
    with torch.no_grad():
        for key, t in weights.items():
            _, i, pos, param = key.split(".")
            block = sites[(int(i), pos)].eterna_bottlenecks[name]
            getattr(block, param).copy_(t.to(device=ref.device, dtype=torch.float32))
    return cfg
