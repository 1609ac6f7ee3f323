"""Direct Preference Optimization (Rafailov et al., 2023) of one character's voice with TRL's DPOTrainer.

    recipe = DPORecipe(max_steps=40, beta=0.1)
    manifest = train_dpo(base_dir, "preferences/guard.jsonl", "adapters/guard-dpo", recipe, system=persona,
                         start="adapters/guard")   # continue the SFT adapter; start=None: a fresh adapter

The start point and the reference model:
- `start` = an SFT adapter (PEFT): it is loaded trainable as "default". With no `peft_config` and no `ref_model`,
  TRL's DPOTrainer copies it into a frozen "ref" adapter and computes reference log-probs with "ref" active, so the
  reference is the SFT-adapted model (the standard SFT -> DPO setup), not the bare base. Only "default" is saved.
- `start` = an SFT bottleneck adapter: the policy is base + that adapter (trainable); the reference is a second
  copy of base + the same adapter, frozen, passed to TRL as `ref_model`.
- `start=None`: a fresh adapter of `recipe.method` on the base. A fresh PEFT adapter starts as the identity, so
  TRL's reference (adapters disabled) is the base, which is also the starting policy. A fresh bottleneck adapter
  gets the bare base as `ref_model`.

Held-out pairs (a seeded split of `held_out` of the pairs, at least one) are scored with the trainer's own
`evaluate` before and after training: DPO's implicit rewards r = beta * (logp_policy - logp_ref) summed over the
reply's tokens, their mean margin r(chosen) - r(rejected), and the share of pairs with r(chosen) > r(rejected).
Before training the policy is the reference, so rewards are 0 and the accuracy 0 by construction; the policy's own
log-prob margin logp(chosen) - logp(rejected) (batch means) is reported too, and is informative before training.
The persona system prompt is prepended to every prompt, as in SFT; the artifact is saved like SFT's
(tuning/artifact.py).
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from retrieval.errors import ConfigError, CorpusError, EternaError
from retrieval.fileio import fingerprint_dir
from tuning.adapters import check_base, read_adapter_manifest
from tuning.artifact import (
    load_for_training,
    manifest,
    publish,
    save_trained,
    staging,
    trainable_parameters,
)
from tuning.base import model_fingerprint, portable_path
from tuning.checkpoints import TrainingRun
from tuning.data import data_fingerprint, load_preferences
from tuning.kinds import kind_for_dir, kind_of
from tuning.methods import get_method
from tuning.speed import BF16_HELP, cpu_training, use_bf16


class DPORecipe(BaseModel):
    """Hyper-parameters of the DPO recipe; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field("lora", description="PEFT method of a fresh adapter (ignored when continuing one: its own "
                                            "method is kept); not full")
    params: dict = Field(default_factory=dict, description="the method's own parameters (fresh adapters only)")
    beta: float = Field(0.1, gt=0, description="DPO temperature: how far the policy may move from the reference")
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = Field("sigmoid", description="sigmoid: DPO; ipo: "
                                                                                           "IPO (Azar et al.)")
    epochs: float = Field(3.0, gt=0)
    max_steps: int = Field(-1, description="stop after this many optimizer steps (-1: run all epochs)")
    learning_rate: float = Field(1e-4, gt=0)
    batch_size: int = Field(4, ge=1, description="preference pairs per step (each pair is two sequences)")
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(384, ge=32, description="tokens per prompt + reply; longer ones are truncated")
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    held_out: float = Field(0.2, ge=0, lt=1, description="share of pairs kept out of training and scored before "
                                                         "and after (at least one pair when > 0)")
    bf16: bool | Literal["auto"] = Field("auto", description=BF16_HELP)
    seed: int = 0
    logging_steps: int = Field(5, ge=1)
    save_dtype: Literal["float32", "float16"] = "float32"
    save_steps: int = Field(0, ge=0, description="checkpoint every N optimizer steps into <out>.checkpoints/ "
                                                 "(0: none); resume=True continues from the last one")


def split_pairs(pairs: list[dict], held_out: float, seed: int, path: Path) -> tuple[list[dict], list[dict]]:
    """(train, held) by a seeded shuffle: round(held_out * n) pairs held out, at least 1 when held_out > 0."""
    if held_out <= 0:
        return pairs, []
    if len(pairs) < 2:
        raise CorpusError(f"{path}: {len(pairs)} preference pair; holding some out needs at least 2 (add pairs or "
                          "set held_out 0)")
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_held = min(len(pairs) - 1, max(1, round(held_out * len(pairs))))
    held = sorted(order[:n_held])
    keep = set(held)
    return [p for i, p in enumerate(pairs) if i not in keep], [pairs[i] for i in held]


def to_conversational(pairs: list[dict], system: str | None) -> list[dict]:
    """TRL's conversational preference rows: the persona as the system turn, the player's line as the user turn."""
    head = [{"role": "system", "content": system}] if system else []
    return [{"prompt": [*head, {"role": "user", "content": p["prompt"]}],
             "chosen": [{"role": "assistant", "content": p["chosen"]}],
             "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in pairs]


def _load_start(base_dir: Path, start: Path):
    """(policy, ref_model or None, start manifest) continuing the adapter at `start`."""
    start = Path(start)
    start_manifest = read_adapter_manifest(start)
    check_base(start_manifest, start, model_fingerprint(base_dir))
    model, tok, ref = kind_for_dir(start, start_manifest).dpo_start(base_dir, start)
    return model, tok, ref, start_manifest


def _held_metrics(trainer, held_ds) -> dict:
    m = trainer.evaluate(eval_dataset=held_ds)
    return {"loss": m["eval_loss"], "reward_margin": m["eval_rewards/margins"],
            "reward_accuracy": m["eval_rewards/accuracies"], "reward_chosen": m["eval_rewards/chosen"],
            "reward_rejected": m["eval_rewards/rejected"],
            "logp_margin": m["eval_logps/chosen"] - m["eval_logps/rejected"]}


def train_dpo(base_dir: Path, data: Path, out_dir: Path, recipe: DPORecipe, *, start: Path | None = None,
              system: str | None = None, npc: str | None = None, base_spec: str | None = None, log: bool = False,
              built_by: str = "eterna train dpo", extra: dict | None = None, resume: bool = False,
              keep_checkpoints: bool = False) -> dict:
    """Train with DPO and write the adapter atomically to out_dir. Returns the manifest written with it.
    `resume`: continue an interrupted run's last checkpoint (tuning/checkpoints.py)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    t0 = time.perf_counter()
    data, out_dir = Path(data), Path(out_dir)
    pairs = load_preferences(data)  # validate before loading any model
    train_pairs, held_pairs = split_pairs(pairs, recipe.held_out, recipe.seed, data)
    if start is None:
        method = get_method(recipe.method)
        kind_of(method.kind).check_dpo(recipe.method)
        params = method.parse(recipe.params)
        model, tok, peft_config = load_for_training(base_dir, method, params, recipe.seed)
        ref_model = kind_of(method.kind).dpo_reference(base_dir)
        method_name, kind, params_dump = recipe.method, method.kind, params.model_dump()
        start_info = {"from": "base"}
    else:
        if {"method", "params"} & recipe.model_fields_set:
            raise ConfigError(f"DPO recipe: method/params apply to a fresh adapter only; {start} keeps its own "
                              "method (drop them, or start from the base)")
        model, tok, ref_model, start_manifest = _load_start(base_dir, start)
        peft_config = None
        method_name, kind = start_manifest.get("method", "lora"), start_manifest.get("kind", "adapter")
        params_dump = start_manifest.get("recipe", {}).get("params", {})
        start_info = {"from": "adapter", "path": portable_path(start), "fingerprint": fingerprint_dir(start),
                      "built_by": start_manifest.get("built_by"),
                      "data_sha256": start_manifest.get("data", {}).get("sha256")}
    train_ds = Dataset.from_list(to_conversational(train_pairs, system))
    held_ds = Dataset.from_list(to_conversational(held_pairs, system)) if held_pairs else None
    run = TrainingRun(out_dir, {"data_sha256": data_fingerprint(data), "base": model_fingerprint(base_dir),
                                "system": system, "start": start_info,
                                "recipe": {**recipe.model_dump(), "params": params_dump}},
                      save_steps=recipe.save_steps, resume=resume, keep_checkpoints=keep_checkpoints, log=log)
    bf16 = use_bf16(recipe.bf16)
    with staging(out_dir, "train") as work:
        args = DPOConfig(
            use_cpu=True, bf16=bf16, fp16=False,
            gradient_checkpointing=False,  # CPU + small model: recomputation costs more than it saves
            per_device_train_batch_size=recipe.batch_size, per_device_eval_batch_size=recipe.batch_size,
            gradient_accumulation_steps=recipe.grad_accum, num_train_epochs=recipe.epochs,
            max_steps=recipe.max_steps, learning_rate=recipe.learning_rate, lr_scheduler_type="cosine",
            warmup_steps=recipe.warmup_ratio, logging_steps=recipe.logging_steps, eval_strategy="no",
            report_to="none", seed=recipe.seed, max_length=recipe.max_length,
            beta=recipe.beta, loss_type=[recipe.loss_type], dataloader_num_workers=0, **run.trainer_args(work))
        trainer = DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=train_ds,
                             processing_class=tok, peft_config=peft_config)
        run.attach(trainer)
        trainable = trainable_parameters(trainer.model)
        before = _held_metrics(trainer, held_ds) if held_ds is not None else None
        with cpu_training():  # the same thread and LM-head settings as SFT (tuning/speed.py)
            result = trainer.train(resume_from_checkpoint=run.resume_from)
        if not math.isfinite(result.training_loss):
            raise EternaError(f"DPO diverged (loss {result.training_loss}); lower learning_rate or raise beta")
        after = _held_metrics(trainer, held_ds) if held_ds is not None else None
        history = [h for h in trainer.state.log_history if "loss" in h]
        out = manifest(
            built_by=built_by, extra=extra, npc=npc, method=method_name, kind=kind, trainable=trainable,
            base_dir=base_dir, base_spec=base_spec, data=data, examples=len(pairs),
            recipe={**recipe.model_dump(), "params": params_dump}, system=system, start=start_info,
            metrics={"train_loss": result.training_loss, "first_loss": history[0]["loss"] if history else None,
                     "last_loss": history[-1]["loss"] if history else None, "steps": trainer.state.global_step,
                     "train_pairs": len(train_pairs), "held_out_pairs": len(held_pairs),
                     "held_out": {"before": before, "after": after} if held_ds is not None else None,
                     "seconds": round(time.perf_counter() - t0, 1), "bf16": bf16},
            **run.info(trainer))
        if run.is_main(trainer):
            staged = save_trained(trainer.model, tok, kind, params_dump, work / "adapter", recipe.save_dtype)
            publish(staged, out_dir, out, trainer.state.log_history)
        run.finish(trainer)
    return out

