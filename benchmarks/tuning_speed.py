"""SFT training speed on the CPU: Eterna's LoRA recipe against TRL's defaults, and every method side by side.

    .venv/bin/python benchmarks/tuning_speed.py [--quick] [--steps 12]        # the LoRA line (ratio, loss_delta)
    .venv/bin/python benchmarks/tuning_speed.py --methods [--quick] [--method-steps 8]   # one line per method

Data: one character's style file (default corpora/library/style/warden.jsonl) with its persona as the system
turn, on the default base (SmolLM2-135M-Instruct, cached under the project's .eterna/models or --cache).

LoRA line. Eterna = `train_sft` with its recipe (group_by_length batches, no gradient checkpointing, bf16, compact
LM head, tuning/speed.py), with TRL's default schedule (linear decay, no warmup) instead of its own cosine.
Baseline = TRL's `SFTTrainer` with a default `SFTConfig` (gradient checkpointing on,
bf16 on, random batches) plus `use_cpu=True`, the same LoRA config, data, per-device batch, accumulation, learning
rate and step count (and `logging_steps=1`, to read its losses). tokens/s = real (non-pad) tokens over the seconds
inside `trainer.train()` (model loading excluded). loss_delta = |eterna - trl| / trl of the loss each trained
adapter gets over the same examples (completion-only NLL of the first --eval-examples rows, bf16, no grad), so the
different batch orders and learning-rate schedules are compared like with like; the mean of the last steps'
training losses is printed too.

Methods. Each method trains in a fresh subprocess (so ru_maxrss is its own peak RSS), --method-steps steps.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

METHODS = ["full", "lora", "dora", "qlora", "ia3", "prefix", "prompt", "adapter"]
METHOD_LR = {"full": 5e-5}  # full fine-tuning needs a far lower rate than the adapters' 1e-3 (docs/tuning.md)


def setup(args):
    from app.config import Cast, EternaConfig
    from app.prompt import system_prompt
    from tuning.base import prepare_model

    cfg = EternaConfig.load(REPO / "configs" / "eterna.yaml")
    npc = Cast.load(cfg.paths.npcs, cfg.world).get(args.npc)
    system = system_prompt(npc, cfg.world, cfg.prompts)
    base = prepare_model(cfg.models.llm, Path(args.cache))
    return base, cfg.paths.style / f"{npc.id}.jsonl", system


def trl_default_run(base, data, system, out, recipe):
    """TRL's SFTTrainer, default SFTConfig + use_cpu; the adapter is saved to `out` for the loss comparison."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from tuning.artifact import load_for_training
    from tuning.data import load_chat_examples, to_prompt_completion
    from tuning.methods import get_method
    from tuning.speed import train_speed

    method = get_method("lora")
    model, tok, peft_config = load_for_training(base, method, method.parse(recipe.params), recipe.seed)
    dataset = Dataset.from_list(to_prompt_completion(load_chat_examples(data), system))
    with tempfile.TemporaryDirectory() as tmp:
        args = SFTConfig(output_dir=tmp, use_cpu=True, per_device_train_batch_size=recipe.batch_size,
                         gradient_accumulation_steps=recipe.grad_accum, learning_rate=recipe.learning_rate,
                         max_steps=recipe.max_steps, seed=recipe.seed, logging_steps=1, save_strategy="no",
                         report_to="none", disable_tqdm=True)
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok,
                             peft_config=peft_config)
        result = trainer.train()
    trainer.model.save_pretrained(out)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {**train_speed(trainer, result), "losses": losses,
            "gradient_checkpointing": args.gradient_checkpointing, "bf16": args.bf16}, trainer.train_dataset


def adapter_loss(base, adapter: Path, rows) -> float:
    """Completion-only mean NLL of `rows` (TRL-tokenized: input_ids, labels) under base + adapter."""
    import torch
    from peft import PeftModel

    from tuning.base import load_base

    model, _ = load_base(base, "float32")
    model = PeftModel.from_pretrained(model, str(adapter)).eval()
    total, count = 0.0, 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for row in rows:
            ids = torch.tensor([row["input_ids"]])  # (1, T)
            labels = torch.tensor([row["labels"]])  # (1, T), -100 on the prompt
            n = int((labels[:, 1:] != -100).sum())
            total += float(model(input_ids=ids, labels=labels).loss) * n
            count += n
    return total / count


def lora_line(args) -> dict:
    from tuning.sft import SFTRecipe, train_sft

    base, data, system = setup(args)
    recipe = SFTRecipe(max_steps=args.steps, logging_steps=1, seed=0)
    # the same learning-rate schedule as TRL's defaults (linear decay, no warmup), so the loss compares the speed
    # settings only, not two schedules
    same_schedule = recipe.model_copy(update={"lr_scheduler": "linear", "warmup_ratio": 0.0})
    with tempfile.TemporaryDirectory() as tmp:
        trl_m, prepared = trl_default_run(base, data, system, Path(tmp) / "trl", recipe)
        man = train_sft(base, data, Path(tmp) / "eterna", same_schedule, system=system)
        ete = man["metrics"]
        rows = [prepared[i] for i in range(min(args.eval_examples, len(prepared)))]
        loss_trl = adapter_loss(base, Path(tmp) / "trl", rows)
        loss_ete = adapter_loss(base, Path(tmp) / "eterna", rows)
    tail = max(1, args.steps // 4)
    ete_losses = ete.get("losses") or []
    return {"benchmark": "tuning_speed", "figure": "lora_sft", "data": str(data.relative_to(REPO)),
            "steps": args.steps, "batch": recipe.batch_size, "grad_accum": recipe.grad_accum,
            "learning_rate": recipe.learning_rate, "schedule": "linear, no warmup (TRL's default) on both sides",
            "threads": _threads(),
            "eterna_tokens_per_second": ete["tokens_per_second"], "trl_tokens_per_second": trl_m["tokens_per_second"],
            "ratio": round(ete["tokens_per_second"] / trl_m["tokens_per_second"], 3),
            "eterna_seconds": ete["train_seconds"], "trl_seconds": trl_m["train_seconds"],
            "eterna_tokens": ete["train_tokens"], "trl_tokens": trl_m["train_tokens"],
            "eval_examples": len(rows), "eterna_loss": round(loss_ete, 4), "trl_loss": round(loss_trl, 4),
            "loss_delta": round(abs(loss_ete - loss_trl) / loss_trl, 4),
            "eterna_last_steps_loss": _mean(ete_losses[-tail:]), "trl_last_steps_loss": _mean(trl_m["losses"][-tail:]),
            "trl_defaults": {"gradient_checkpointing": trl_m["gradient_checkpointing"], "bf16": trl_m["bf16"]}}


def one_method(args) -> dict:
    """Train one method (in this fresh process) and report its peak RSS, size and speed."""
    from tuning.sft import SFTRecipe, train_sft

    base, data, system = setup(args)
    name = args.one_method
    recipe = SFTRecipe(method=name, max_steps=args.method_steps, logging_steps=1,
                       learning_rate=METHOD_LR.get(name, 1e-3))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / name
        man = train_sft(base, data, out, recipe, system=system)
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    m = man["metrics"]
    return {"benchmark": "tuning_methods", "method": name, "steps": m["steps"],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "trainable_parameters": man["trainable_parameters"], "artifact_mb": round(size / 2**20, 2),
            "tokens_per_second": m["tokens_per_second"], "train_seconds": m["train_seconds"],
            "first_loss": m["first_loss"], "last_loss": m["last_loss"]}


def methods(args) -> None:
    for name in args.only or METHODS:
        cmd = [sys.executable, __file__, "--one-method", name, "--method-steps", str(args.method_steps),
               "--npc", args.npc, "--cache", args.cache]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode or not lines:
            print(json.dumps({"benchmark": "tuning_methods", "method": name, "error": proc.stderr[-600:]}), flush=True)
            continue
        print(json.dumps({**json.loads(lines[-1]), "wall_seconds": round(time.perf_counter() - t0, 1)}), flush=True)


def _threads() -> int:
    from tuning.speed import physical_cores

    return physical_cores()


def _mean(xs):
    return round(sum(xs) / len(xs), 4) if xs else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a few steps, to check the script runs")
    ap.add_argument("--steps", type=int, default=12, help="optimizer steps of each LoRA run")
    ap.add_argument("--eval-examples", type=int, default=48, help="rows the final losses are compared on")
    ap.add_argument("--methods", action="store_true", help="one line per method instead of the LoRA line")
    ap.add_argument("--only", nargs="*", help="with --methods: these methods only")
    ap.add_argument("--method-steps", type=int, default=8)
    ap.add_argument("--one-method", help=argparse.SUPPRESS)
    ap.add_argument("--npc", default="warden")
    ap.add_argument("--cache", default=str(Path(__file__).resolve().parents[1] / ".eterna" / "models"), help="prepared base models (tuning.base)")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.method_steps, args.eval_examples = 3, 2, 8
    if args.one_method:
        print(json.dumps(one_method(args)), flush=True)
    elif args.methods:
        methods(args)
    else:
        print(json.dumps(lora_line(args)), flush=True)


if __name__ == "__main__":
    main()
