"""Knowledge distillation of one character into a small standalone student checkpoint (TRL's GKDTrainer, off-policy).

    manifest = train_student(base_dir, adapter, train, held_out, "students/tome", DistillRecipe(layers=3), ...)

`train` and `held_out` are chat examples whose last turn is the teacher's own reply (built by app/distill.py).
The teacher (base + the character's adapter, merged) runs live beside the student; the loss on the reply tokens is
    (1 - ce_weight) * T^2 * KL(teacher_T || student_T) + ce_weight * CE(student, teacher's tokens).
TRL 1.x: `DistillationTrainer` always trains on the student's own on-policy samples; `GKDTrainer` with lmbda=0 and
seq_kd off is supervised KD on fixed dialogues, but its loss ignores the temperature, so `compute_loss` is ours
(it calls TRL's `generalized_jsd_loss`) and `training_step` skips the on-policy branch.

The artifact is a full checkpoint (config, safetensors, tokenizer) plus `eterna_adapter.json` (kind "student":
teacher base fingerprint, adapter, data hash, recipe, system prompt, metrics) and the dialogues it learned from;
it is built in a staging folder and renamed into place when complete.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from retrieval.errors import AdapterError, EternaError
from retrieval.fileio import atomic_write_json, atomic_write_text, replace_dir, sha256_file, staging
from tuning.adapters import ADAPTER_MANIFEST, read_adapter_manifest
from tuning.artifact import versions
from tuning.base import base_reference, model_fingerprint, portable_path
from tuning.checkpoints import quiet_trainer
from tuning.speed import cpu_training
from tuning.student import build_student, merged_teacher, plan_student

DIALOGUES_FILE = "dialogues.jsonl"


class DistillRecipe(BaseModel):
    """Student shape, training dialogue and optimisation; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    layers: int = Field(3, ge=1, description="decoder layers of the student (spaced over the teacher's)")
    intermediate: int | None = Field(None, ge=1, description="feed-forward width; null: the widest that keeps the "
                                                             "student within max_params_ratio")
    max_params_ratio: float = Field(0.25, gt=0, le=1, description="parameter budget, a fraction of the teacher's")
    init: Literal["teacher", "fresh"] = Field("teacher", description="copy the teacher's weights, or random init")
    temperature: float = Field(2.0, gt=0, description="softmax temperature of the KL term (scaled by T^2)")
    ce_weight: float = Field(0.5, ge=0, le=1, description="weight of cross-entropy on the teacher's tokens")
    prompt_kd: float = Field(0.0, ge=0, description="weight of the same KL on prompt positions (persona, facts, "
                                                    "question): language the cut student relearns from the teacher")
    prompt_stride: int = Field(4, ge=1, description="every n-th prompt position enters prompt_kd")
    dialogues: int = Field(128, ge=2, description="training dialogues generated from the lore (at most one "
                                                   "per prompt the lore yields)")
    held_out: float = Field(0.25, gt=0, lt=1, description="fraction kept for agreement, speed and voice checks")
    max_new_tokens: int | None = Field(None, ge=4, description="tokens per teacher reply (null: the engine's "
                                                                 "generation.max_new_tokens, so replies are whole)")
    teacher_batch: int = Field(8, ge=1, description="teacher replies decoded together (batched backend)")
    speed_prompts: int = Field(8, ge=1, description="held-out prompts the teacher and student are timed on")
    teacher_temperature: float = Field(0.0, ge=0, description="0: greedy teacher replies; >0: sampled")
    epochs: float = Field(4.0, gt=0)
    max_steps: int = Field(-1, description="stop after this many optimizer steps (-1: run all epochs)")
    learning_rate: float = Field(1.5e-3, gt=0)
    batch_size: int = Field(2, ge=1, description="full-vocabulary logits of teacher and student per token: keep small")
    max_length: int = Field(640, ge=32)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    seed: int = 0
    logging_steps: int = Field(1, ge=1)
    save_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    no_repeat_ngram: int = Field(3, ge=0, description="the student is served banning repeats of its own reply's "
                                                      "n-grams (0: off); a few-layer model loops without it")


def reply_logits(model, inputs, mask):
    """(N, V) next-token logits at the N positions where `mask` (B, L-1) is true. The LM head projects only those
    positions: a reply is a few dozen of a prompt's hundreds of tokens, and full (B, L, V) logits of teacher and
    student dominated a step's time and memory (page faults of 100 MB tensors). Models without the usual
    body + output-embedding layout get full logits, then the same selection."""
    body = getattr(model, getattr(model, "base_model_prefix", ""), None)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    kw = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    if body is None or head is None or getattr(model.config, "final_logit_softcapping", None):
        return model(**kw).logits[:, :-1][mask]
    hidden = body(**kw).last_hidden_state  # (B, L, H)
    return head(hidden[:, :-1][mask])  # (N, V)


def _kd_trainer(recipe: DistillRecipe):
    import torch
    import torch.nn.functional as F
    from trl import SFTTrainer
    from trl.experimental.gkd import GKDTrainer

    class KDTrainer(GKDTrainer):
        parts: list[tuple[float, float]] = []

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs["labels"][:, 1:]  # (B, L-1): the token each position predicts
            mask = labels != -100  # (B, L-1): reply tokens only
            used = mask
            if recipe.prompt_kd > 0:  # also every prompt_stride-th prompt position (persona, facts, question)
                real = inputs["attention_mask"][:, 1:].bool()
                every = torch.arange(real.shape[1], device=real.device) % recipe.prompt_stride == 0
                used = mask | (real & ~mask & every)
            s_all = reply_logits(model, inputs, used)  # (N', V)
            with torch.no_grad():
                t_all = reply_logits(self.teacher_model, inputs, used)  # (N', V)
            reply = mask[used]  # (N',): which of those positions are reply tokens
            s, t = s_all[reply], t_all[reply]
            T = recipe.temperature
            kl = self.generalized_jsd_loss(s, t, beta=0.0, temperature=T) * T * T  # beta 0: KL(teacher || student)
            ce = F.cross_entropy(s, labels[mask])
            loss = (1 - recipe.ce_weight) * kl + recipe.ce_weight * ce
            if recipe.prompt_kd > 0 and not bool(reply.all()):
                prompt_kl = self.generalized_jsd_loss(s_all[~reply], t_all[~reply], beta=0.0, temperature=T) * T * T
                loss = loss + recipe.prompt_kd * prompt_kl
            self.parts.append((kl.item(), ce.item()))
            return (loss, None) if return_outputs else loss

        def training_step(self, model, inputs, num_items_in_batch=None):
            return SFTTrainer.training_step(self, model, inputs, num_items_in_batch)  # off-policy: no generation

    KDTrainer.parts = []
    return KDTrainer


def agreement(teacher, student, collator, examples: list[list[dict]], batch_size: int = 2) -> dict:
    """Teacher-forced on the teacher's replies: how often the student's top-1 next token is the teacher's, and the
    mean KL(teacher || student) at T=1, over every reply token of `examples`."""
    import torch
    import torch.nn.functional as F

    was_training = student.training
    student.eval()
    same, kl, n = 0, 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(examples), batch_size):
            b = collator([{"messages": m} for m in examples[i:i + batch_size]])
            mask = b["labels"][:, 1:] != -100  # (B, L-1)
            t = reply_logits(teacher, b, mask).float()  # (N, V)
            s = reply_logits(student, b, mask).float()  # (N, V)
            same += int((t.argmax(-1) == s.argmax(-1)).sum())
            kl += float(F.kl_div(s.log_softmax(-1), t.log_softmax(-1), log_target=True, reduction="sum"))
            n += int(mask.sum())
    student.train(was_training)
    return {"top1": round(same / n, 4) if n else None, "kl": round(kl / n, 4) if n else None, "tokens": n}


def train_student(base_dir: Path, adapter: Path | None, train: list[list[dict]], held_out: list[list[dict]],
                  out_dir: Path, recipe: DistillRecipe, *, npc: str | None = None, system: str | None = None,
                  base_spec: str | None = None, data: dict | None = None,
                  evaluate: Callable[[Path], dict] | None = None, log: bool = False) -> dict:
    """Distil the teacher into a student and write it atomically to out_dir. `evaluate(staged_dir)` may add
    metrics measured on the saved student (speed, voice) before the manifest is written. Returns the manifest."""
    import torch
    from datasets import Dataset
    from trl.experimental.gkd import GKDConfig
    from trl.experimental.utils import DataCollatorForChatML

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    if not train or not held_out:
        raise EternaError(f"distillation needs training and held-out dialogues (got {len(train)} and "
                          f"{len(held_out)}); raise --dialogues")
    adapter_manifest = read_adapter_manifest(adapter) if adapter is not None else None
    teacher, tok = merged_teacher(base_dir, adapter)
    plan = plan_student(teacher, recipe.layers, recipe.max_params_ratio, recipe.intermediate)
    torch.manual_seed(recipe.seed)
    student = build_student(teacher, plan, recipe.init)
    collator = DataCollatorForChatML(tokenizer=tok, max_length=recipe.max_length)
    before = agreement(teacher, student, collator, held_out)

    with staging(out_dir, "distill") as work:
        args = GKDConfig(
            output_dir=str(work / "trainer"), use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
            per_device_train_batch_size=recipe.batch_size, num_train_epochs=recipe.epochs,
            max_steps=recipe.max_steps, learning_rate=recipe.learning_rate, lr_scheduler_type="cosine",
            warmup_steps=recipe.warmup_ratio, logging_steps=recipe.logging_steps, save_strategy="no",
            report_to="none", seed=recipe.seed, max_length=recipe.max_length, dataloader_num_workers=0,
            disable_tqdm=True, lmbda=0.0, beta=0.0, seq_kd=False, temperature=recipe.temperature)
        trainer = _kd_trainer(recipe)(
            model=student, teacher_model=teacher, args=args, processing_class=tok, data_collator=collator,
            train_dataset=Dataset.from_list([{"messages": m} for m in train]))
        quiet_trainer(trainer, log)
        with cpu_training(compact_head=False):  # threads = physical cores, no tokenizer threads
            result = trainer.train()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        if not math.isfinite(result.training_loss):
            raise EternaError(f"distillation diverged (loss {result.training_loss}); lower learning_rate")
        student = trainer.model
        after = agreement(teacher, student, collator, held_out)

        staged = work / "student"
        student.to({"float32": torch.float32, "bfloat16": torch.bfloat16,
                    "float16": torch.float16}[recipe.save_dtype]).save_pretrained(staged)
        tok.save_pretrained(staged)
        rows = [json.dumps({"split": split, "messages": m}, ensure_ascii=False)
                for split, ms in (("train", train), ("held_out", held_out)) for m in ms]
        atomic_write_text(staged / DIALOGUES_FILE, "\n".join(rows) + "\n")
        extra = evaluate(staged) if evaluate is not None else {}
        size = sum(p.stat().st_size for p in staged.rglob("*") if p.is_file())
        manifest = {
            "built_by": "eterna train distill",
            "kind": "student",
            "npc": npc,
            "base": base_reference(base_spec, base_dir),
            "adapter": None if adapter is None else {
                "path": portable_path(adapter), "method": adapter_manifest.get("method"),
                "data_sha256": adapter_manifest.get("data", {}).get("sha256")},
            "student": {**plan.to_json(recipe.max_params_ratio), "init": recipe.init,
                        "size_mb": round(size / 2**20, 2)},
            "data": {**(data or {}), "sha256": sha256_file(staged / DIALOGUES_FILE)[:16], "train": len(train),
                     "held_out": len(held_out)},
            "recipe": recipe.model_dump(),
            "decoding": {"no_repeat_ngram": recipe.no_repeat_ngram},  # how the engine serves it
            "system": system,
            "metrics": {"train_loss": result.training_loss, "first_loss": losses[0] if losses else None,
                        "last_loss": losses[-1] if losses else None, "steps": trainer.state.global_step,
                        "last_kl": trainer.parts[-1][0] if trainer.parts else None,
                        "agreement": {"before": before, "after": after}, **extra,
                        "seconds": round(time.perf_counter() - t0, 1)},
            "versions": versions(),
        }
        atomic_write_json(staged / ADAPTER_MANIFEST, manifest)
        replace_dir(staged, out_dir)
    return manifest


def read_student_manifest(path: Path) -> dict:
    """The manifest of a student checkpoint folder, or AdapterError saying what is missing and how to get it."""
    path = Path(path)
    manifest_path = path / ADAPTER_MANIFEST
    if not (path / "config.json").is_file() or not manifest_path.is_file():
        raise AdapterError(f"{path}: not a student checkpoint (needs config.json and {ADAPTER_MANIFEST}); build one "
                           "with `eterna train distill --npc ID --out DIR`")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise AdapterError(f"{manifest_path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if manifest.get("kind") != "student":
        raise AdapterError(f"{manifest_path}: kind is {manifest.get('kind')!r}, not 'student'; point the field at "
                           "a folder written by `eterna train distill`")
    return manifest
