"""A training run's life beside its artifact: interval checkpoints, resuming, progress on stderr, and ranks.

    run = TrainingRun(out_dir, identity={...data hash, recipe...}, save_steps=20, resume=True, log=True)
    args = SFTConfig(..., **run.trainer_args(work))        # output_dir, save_strategy, save_steps, tqdm off
    trainer = SFTTrainer(...); run.attach(trainer)         # progress/log lines + checkpoint markers
    trainer.train(resume_from_checkpoint=run.resume_from)  # None: from scratch
    if run.is_main(trainer): ... save, publish ...
    run.finish(trainer)                                    # all ranks meet; checkpoints go unless kept

Checkpoints live in `<out_dir>.checkpoints/` beside the output (the staging folder is deleted on any exit, a crash
must not take them along). `run.json` there records the run's identity (data hash, recipe, base fingerprint); each
`checkpoint-N/` the trainer writes is complete once `eterna_checkpoint.json` is in it (written after the trainer's
own save returned). `resume=True` continues from the newest complete checkpoint through the trainer's own
`resume_from_checkpoint` (weights, optimizer, scheduler, RNG states, data position) and refuses, naming the fields,
when the identity differs; with no checkpoint it starts from scratch. Without `resume`, old checkpoints are discarded.

Under `accelerate launch` every process runs the same code; the trainer writes checkpoints from the main process
(RNG states from each), and only the main process (`trainer.is_world_process_zero()`) saves and publishes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

from retrieval.errors import ConfigError
from retrieval.fileio import atomic_write_json

RUN_FILE = "run.json"
DONE_FILE = "eterna_checkpoint.json"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    return out_dir.parent / f"{out_dir.name}.checkpoints"


def complete_checkpoints(root: Path) -> list[Path]:
    """The checkpoints in root whose save finished, oldest first."""
    if not Path(root).is_dir():
        return []
    found = [(int(m.group(1)), p) for p in Path(root).iterdir() if (m := _CKPT.match(p.name)) and p.is_dir()
             and (p / DONE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def _is_main_env() -> bool:
    """Before the trainer exists: rank from the launcher's environment (torchrun/accelerate set RANK)."""
    return int(os.environ.get("RANK", "0")) == 0


class TrainingRun:
    def __init__(self, out_dir: Path, identity: dict, *, save_steps: int = 0, resume: bool = False,
                 keep_checkpoints: bool = False, log: bool = False):
        self.root = checkpoint_dir(out_dir)
        self.identity = json.loads(json.dumps(identity))  # what run.json holds, for an exact comparison
        self.save_steps, self.keep, self.log = save_steps, keep_checkpoints, log
        self.resume_from: str | None = None
        if resume:
            self.resume_from = self._find_resume()
        elif self.root.exists() and _is_main_env():
            if self.log:
                print(f"discarding old checkpoints in {self.root} (--resume continues them)", file=sys.stderr)
            shutil.rmtree(self.root, ignore_errors=True)

    def _find_resume(self) -> str | None:
        done = complete_checkpoints(self.root)
        if not done:
            if self.log:
                print(f"no complete checkpoint in {self.root}; training from the start", file=sys.stderr)
            return None
        run_file = self.root / RUN_FILE
        try:
            saved = json.loads(run_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{run_file}: unreadable ({e}); delete {self.root} and train without --resume") from None
        diff = sorted(_diff(saved, self.identity))
        if diff:
            raise ConfigError(f"{self.root} was written by a different run ({', '.join(diff)} differ); resume with "
                              f"the same data and recipe, or delete {self.root} and train without --resume")
        if self.log:
            print(f"resuming from {done[-1]}", file=sys.stderr, flush=True)
        return str(done[-1])

    def trainer_args(self, work: Path) -> dict:
        """TrainingArguments fields this module owns (pass them into SFTConfig/DPOConfig)."""
        if not self.save_steps:
            return {"output_dir": str(Path(work) / "trainer"), "save_strategy": "no", "disable_tqdm": True}
        if _is_main_env():
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.root / RUN_FILE, self.identity)
        return {"output_dir": str(self.root), "save_strategy": "steps", "save_steps": self.save_steps,
                "save_total_limit": 2, "disable_tqdm": True}

    def attach(self, trainer) -> None:
        """stdout belongs to the caller (the CLI prints JSON there): progress goes to stderr, as a bar on a
        terminal and as plain lines otherwise; checkpoints get their completion marker."""
        quiet_trainer(trainer, self.log)
        if self.save_steps:
            trainer.add_callback(_marker_callback(self.identity))

    def info(self, trainer) -> dict:
        """Manifest fields of the run: the checkpoint it resumed from, and how many processes trained."""
        return {"resumed_from": self.resume_from and Path(self.resume_from).name,
                "processes": trainer.args.world_size}

    @staticmethod
    def is_main(trainer) -> bool:
        return trainer.is_world_process_zero()

    def finish(self, trainer) -> None:
        """After the main process published: every process waits for it; the checkpoints go unless kept."""
        trainer.accelerator.wait_for_everyone()
        if self.save_steps and not self.keep and trainer.is_world_process_zero():
            shutil.rmtree(self.root, ignore_errors=True)


def quiet_trainer(trainer, log: bool) -> None:
    """stdout belongs to the caller: the trainer's printing goes, progress goes to stderr (a bar on a terminal)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if log:
        trainer.add_callback(_progress_callback(bar=sys.stderr.isatty()))


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in set(a) | set(b):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(prefix + k)
    return out


def _marker_callback(identity: dict):
    from transformers import TrainerCallback

    class CheckpointMarker(TrainerCallback):
        """on_save runs after the trainer's save returned: the checkpoint is complete."""

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if path.is_dir():
                    atomic_write_json(path / DONE_FILE, {"step": state.global_step, **identity})
    return CheckpointMarker()


def _progress_callback(bar: bool):
    from transformers import TrainerCallback

    class StderrProgress(TrainerCallback):
        def __init__(self):
            self.bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            if bar and state.is_world_process_zero:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=state.max_steps, initial=state.global_step, file=sys.stderr, unit="step",
                                dynamic_ncols=True)

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "loss" not in logs:
                return
            extra = {k.split("/")[-1]: logs[k] for k in ("rewards/margins", "rewards/accuracies") if k in logs}
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{logs['loss']:.4f}", **{k: f"{v:.3f}" for k, v in extra.items()})
            else:
                tail = "".join(f" {k} {v:.4f}" for k, v in extra.items())
                print(f"step {state.global_step}/{state.max_steps} loss {logs['loss']:.4f}{tail}", file=sys.stderr,
                      flush=True)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None
    return StderrProgress()
