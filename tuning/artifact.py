"""What every training recipe shares: loading the base for a method, the staging folder, saving the trained
weights, and the `eterna_adapter.json` manifest. SFT, RAFT and DPO all save through here, so every adapter has
the same layout and the same manifest fields.

    model, tok, peft_config = load_for_training(base_dir, method, params, seed)
    with staging(out_dir, "train") as work:
        ... train into work / "trainer" ...
        staged = save_trained(trainer.model, tok, method.kind, params.model_dump(), work / "adapter", "float32")
        publish(staged, out_dir, manifest(built_by=..., base_dir=base_dir, data=data, ...), trainer.state.log_history)

A manifest records what built the artifact, the base model's fingerprint, the data's hash, the resolved recipe,
the persona system prompt, metrics and the versions of torch, transformers, PEFT and TRL. `publish` writes it and
renames the staged folder into place, so a reader never sees a half-written adapter.
"""

from __future__ import annotations

import platform
from pathlib import Path

from retrieval.fileio import atomic_write_json, replace_dir, staging  # noqa: F401 (staging: shared with sft, dpo)
from tuning.adapters import ADAPTER_MANIFEST, halve_weights, name_base_in_peft_config
from tuning.base import base_reference, load_base, model_fingerprint, portable_path
from tuning.data import data_fingerprint
from tuning.kinds import kind_of
from tuning.methods import Method, MethodParams

LOSS_PLOT = "loss.png"


def load_for_training(base_dir: Path, method: Method, params: MethodParams, seed: int, device: str = "cpu"):
    """(model, tokenizer, peft_config) for training `method` from scratch on the base; peft_config is None when the
    trainer must not wrap the model (full fine-tuning, bottleneck adapters installed here). device "auto": a 4-bit
    base is placed on this process's GPU when there is one (the trainer moves any other model itself)."""
    import os

    import torch

    place = "cpu"
    if device == "auto" and torch.cuda.is_available():
        place = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    model, tok = load_base(base_dir, "float32", quantization=method.quantization, device_map=place)
    if method.quantization:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    torch.manual_seed(seed)
    peft_config = method.build(params, base_dir)
    kind_of(method.kind).prepare(model, params)
    return model, tok, peft_config


def save_trained(model, tok, kind: str, bottleneck_cfg: dict | None, staged: Path, save_dtype: str) -> Path:
    """Save the trained weights of `kind` (tuning.kinds: adapter | bottleneck | full) into `staged`. A PEFT model
    saves only the trained adapter (DPO adds a frozen "ref" copy that must not ship)."""
    staged = Path(staged)
    artifact = kind_of(kind)
    artifact.save(model, tok, staged, bottleneck_cfg)
    weights = artifact.weights
    if save_dtype == "float16" and weights:
        halve_weights(staged, weights)
    return staged


def manifest(*, built_by: str, extra: dict | None, npc: str | None, method: str, kind: str, trainable: int,
             base_dir: Path, base_spec: str | None, data: Path, examples: int, recipe: dict, system: str | None,
             metrics: dict, data_extra: dict | None = None, **more) -> dict:
    return {
        "built_by": built_by,
        **(extra or {}),
        "npc": npc,
        "method": method,
        "kind": kind,
        "trainable_parameters": trainable,
        "base": base_reference(base_spec, base_dir),
        "data": {"path": portable_path(data), "sha256": data_fingerprint(data), "examples": examples,
                 **(data_extra or {})},
        "recipe": recipe,
        "system": system,
        **more,
        "metrics": metrics,
        "versions": versions(),
    }


def publish(staged: Path, out_dir: Path, manifest: dict, history: list[dict] | None = None) -> None:
    """Write the manifest into the staged folder and rename it into place. With the trainer's `history`
    (`trainer.state.log_history`), the loss curve is drawn into the folder first as LOSS_PLOT and the manifest
    (updated in place) names it."""
    if history is not None:
        manifest["loss_curve"] = LOSS_PLOT if plot_losses(history, Path(staged) / LOSS_PLOT) else None
    if isinstance(manifest.get("base"), dict):
        name_base_in_peft_config(staged, manifest["base"])
    atomic_write_json(Path(staged) / ADAPTER_MANIFEST, manifest)
    replace_dir(staged, Path(out_dir))


def plot_losses(history: list[dict], path: Path) -> bool:
    """The training loss (and DPO's reward margin, when logged) per step as a PNG; False when nothing was logged.
    Draws on a private Agg canvas: no global matplotlib backend is touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    if not points:  # a run shorter than logging_steps logs only its mean loss
        points = [(h["step"], h["train_loss"]) for h in history if "train_loss" in h and "step" in h]
    if not points:
        return False
    fig = Figure(figsize=(6, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(*zip(*points), marker="o", markersize=3, label="train loss")
    margins = [(h["step"], h["rewards/margins"]) for h in history if "rewards/margins" in h and "loss" in h]
    if margins:
        ax.plot(*zip(*margins), marker="s", markersize=3, label="reward margin")
    ax.set_xlabel("optimizer step")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    return True


def trainable_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def versions() -> dict:
    import peft
    import torch
    import transformers
    import trl

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "trl": trl.__version__}
