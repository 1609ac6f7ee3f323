"""Supervised fine-tuning of one character's voice with TRL's SFTTrainer and a PEFT method.

    recipe = SFTRecipe(max_steps=60)
    manifest = train_sft(base_dir, "style/guard.jsonl", "adapters/guard", recipe, system=persona)

The data passes the gate (tuning/gate.py) before any model loads; `skip_bad_rows=True` trains on the rows that
passed instead of refusing. The adapter is a standard PEFT folder plus `eterna_adapter.json`: the base model's
fingerprint, the data hash and gate counts, the resolved recipe, the loss curve (tuning/artifact.py, shared by every
recipe). It is trained in a staging folder and renamed into place when complete.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from retrieval.errors import EternaError
from tuning.artifact import (
    load_for_training,
    manifest,
    publish,
    save_trained,
    staging,
    trainable_parameters,
)
from tuning.base import model_fingerprint
from tuning.checkpoints import TrainingRun
from tuning.data import data_fingerprint, to_prompt_completion
from tuning.facts import FactLinter
from tuning.gate import GateReport, gate_file
from tuning.methods import get_method
from tuning.speed import BF16_HELP, cpu_training, train_speed, use_bf16


class SFTRecipe(BaseModel):
    """Hyper-parameters of the SFT recipe; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field("lora", description="fine-tuning method from tuning.methods: lora, dora, qlora, ia3, "
                                            "prompt, prefix, adapter, full")
    params: dict = Field(default_factory=dict, description="the method's own parameters, checked by its typed "
                                                           "config (e.g. lora: r, alpha, dropout, target_modules)")
    epochs: float = Field(3.0, gt=0)
    max_steps: int = Field(-1, description="stop after this many optimizer steps (-1: run all epochs)")
    learning_rate: float = Field(1e-3, gt=0, description="LoRA tolerates high rates; at 2e-4 the voice barely "
                                                         "moved in 42 steps (see docs/benchmarks.md)")
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(384, ge=32, description="tokens per example (system prompt included); longer ones "
                                                    "follow `overlong`")
    overlong: Literal["drop", "truncate", "error"] = Field(
        "drop", description="examples over max_length: drop (skipped and counted), truncate (the trainer keeps their "
                            "start, cutting the reply's end) or error (the data fails the gate)")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="fraction of steps spent warming up")
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        "cosine", description="learning-rate schedule after the warmup (transformers' names)")
    gradient_checkpointing: bool | None = Field(
        None, description="recompute activations in the backward pass: far less memory, slower steps. Default "
                          "(null): on for methods that quantise the base (qlora: memory is why one picks it, and "
                          "the QLoRA recipe checkpoints), off otherwise (a small model on a CPU trains faster "
                          "without)")
    bf16: bool | Literal["auto"] = Field("auto", description=BF16_HELP)
    seed: int = 0
    logging_steps: int = Field(5, ge=1)
    save_dtype: Literal["float32", "float16"] = Field("float32", description="dtype of the saved adapter weights "
                                                                         "(float16 halves the files shipped)")
    save_steps: int = Field(0, ge=0, description="checkpoint every N optimizer steps into <out>.checkpoints/ "
                                                 "(0: none); `--resume` continues from the last one")
    device: Literal["cpu", "auto"] = Field("cpu", description="cpu, or auto: the GPUs accelerate sees (one per "
                                                              "process under `accelerate launch`)")


def checkpointing(recipe, method) -> bool:
    """Whether a run recomputes activations: the recipe's choice, else on exactly when the method quantises the
    base (QLoRA's point is memory)."""
    if recipe.gradient_checkpointing is not None:
        return bool(recipe.gradient_checkpointing)
    return method.quantization is not None


def train_sft(base_dir: Path, data: Path, out_dir: Path, recipe: SFTRecipe, *, system: str | None = None,
              npc: str | None = None, base_spec: str | None = None, log: bool = False,
              built_by: str = "eterna train sft", extra: dict | None = None, skip_bad_rows: bool = False,
              facts: FactLinter | None = None, data_format: str | None = None, resume: bool = False,
              keep_checkpoints: bool = False, callbacks: list | None = None) -> dict:
    """Train an adapter and write it atomically to out_dir. Returns the manifest written with it.

    The data gate (tuning/gate.py) runs first, before any model loads: data with errors raises a CorpusError
    unless skip_bad_rows, which trains on the rows that passed. `facts` lints the replies for lore terms
    (warnings); `data_format` forces a format (default: detected). `resume` continues from the last checkpoint of
    an interrupted run of the same data and recipe (tuning/checkpoints.py); `callbacks` are extra trainer
    callbacks. Under `accelerate launch` only the main process publishes; the others return the same manifest."""
    t0 = time.perf_counter()
    data, out_dir = Path(data), Path(out_dir)
    method = get_method(recipe.method)
    params = method.parse(recipe.params)
    gate = run_gate(data, recipe, base_dir, system=system, facts=facts, data_format=data_format)
    if log:
        print(gate.render(limit=10), file=sys.stderr, flush=True)
    gate.check(skip_bad_rows)
    examples = gate.items

    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    dataset = Dataset.from_list(to_prompt_completion(examples, system))
    run = TrainingRun(out_dir, {"data_sha256": data_fingerprint(data), "examples": len(examples),
                                "base": model_fingerprint(base_dir), "system": system,
                                "recipe": {**recipe.model_dump(), "params": params.model_dump()}},
                      save_steps=recipe.save_steps, resume=resume, keep_checkpoints=keep_checkpoints, log=log)
    model, tok, peft_config = load_for_training(base_dir, method, params, recipe.seed, recipe.device)
    bf16 = use_bf16(recipe.bf16, recipe.device)
    with staging(out_dir, "train") as work:
        args = SFTConfig(
            use_cpu=recipe.device == "cpu", bf16=bf16, fp16=False,
            gradient_checkpointing=checkpointing(recipe, method),
            gradient_checkpointing_kwargs={"use_reentrant": False},
            train_sampling_strategy="group_by_length",  # batches of similar lengths: little padding
            per_device_train_batch_size=recipe.batch_size, gradient_accumulation_steps=recipe.grad_accum,
            num_train_epochs=recipe.epochs, max_steps=recipe.max_steps, learning_rate=recipe.learning_rate,
            lr_scheduler_type=recipe.lr_scheduler, warmup_steps=recipe.warmup_ratio, logging_steps=recipe.logging_steps,
            report_to="none", seed=recipe.seed, max_length=recipe.max_length,
            dataloader_num_workers=0, **run.trainer_args(work))
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok,
                             peft_config=peft_config, callbacks=callbacks)
        run.attach(trainer)
        trainable = trainable_parameters(trainer.model)
        with cpu_training():
            result = trainer.train(resume_from_checkpoint=run.resume_from)
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        if not math.isfinite(result.training_loss):
            raise EternaError(f"training diverged (loss {result.training_loss}); lower learning_rate")
        out = manifest(
            built_by=built_by, extra=extra, npc=npc, method=recipe.method, kind=method.kind, trainable=trainable,
            base_dir=base_dir, base_spec=base_spec, data=data, examples=len(examples),
            data_extra={"format": gate.format, "gate": {k: v for k, v in gate.counts().items() if k != "overlong"}},
            recipe={**recipe.model_dump(), "params": params.model_dump()}, system=system,
            metrics={"train_loss": result.training_loss, "first_loss": losses[0] if losses else None,
                     "last_loss": losses[-1] if losses else None, "losses": [round(x, 4) for x in losses],
                     "steps": trainer.state.global_step, "bf16": bf16,
                     "seconds": round(time.perf_counter() - t0, 1), **train_speed(trainer, result)},
            **run.info(trainer))
        if run.is_main(trainer):
            staged = save_trained(trainer.model, tok, method.kind, params.model_dump(), work / "adapter",
                                  recipe.save_dtype)
            publish(staged, out_dir, out, trainer.state.log_history)
        run.finish(trainer)
    return out


def run_gate(data: Path, recipe: SFTRecipe, base_dir: Path | None = None, *, system: str | None = None,
             facts: FactLinter | None = None, data_format: str | None = None) -> GateReport:
    """The gate as the recipe applies it: chat data, the recipe's max_length and overlong policy, lengths counted
    with the base model's tokenizer (only the tokenizer loads) or estimated when base_dir is None."""
    tok = None
    if base_dir is not None:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(base_dir)
    return gate_file(data, kind="chat", fmt=data_format, max_length=recipe.max_length, overlong=recipe.overlong,
                     tokenizer=tok, system=system, facts=facts)
