"""CPU training speed: the settings every recipe trains under, and the speed figures it records.

    with cpu_training():              # threads = physical cores, no tokenizer threads, compact LM head
        result = trainer.train()
    metrics = train_speed(trainer, result)   # {"train_seconds", "train_tokens", "tokens_per_second"}

Measured on SmolLM2-135M with LoRA (benchmarks/tuning_speed.py, docs/benchmarks.md, "Tuning speed"), what helps on a CPU:
no gradient checkpointing (recomputing the forward costs more than the memory it saves on a small model), bf16
autocast, and projecting only the reply tokens through the LM head. TRL's fused LM head scores every position on
devices without Triton (so that Neuron compiles one shape); on a CPU that is pure waste, since the prompt's logits
never reach the loss: with a persona prompt about four fifths of the tokens are prompt. `cpu_training` switches
TRL to its compact path (the one it uses on GPUs) for the duration of training; the loss is the same sum over the
same label positions.
"""

from __future__ import annotations

import contextlib
import os


BF16_HELP = ("bf16 autocast (master weights stay fp32): true, false, or auto (the default): on where the device "
             "computes bf16 natively (a CPU with AVX-512 BF16 or AMX, a GPU that supports it), off elsewhere. On a "
             "CPU without it bf16 is emulated: 3 SFT steps of the 135M default took 366 s with it and 35 s without "
             "on a 2-core AVX2 machine, against about 2.4x faster with it on AVX-512 BF16")


def use_bf16(setting: bool | str, device: str = "cpu") -> bool:
    """Whether a run trains under bf16 autocast: the recipe's true/false, or for `auto` whether this machine's
    device computes bf16 natively (decided where the run runs, never where the recipe was written)."""
    if setting != "auto":
        return bool(setting)
    if device != "cpu":
        import torch

        if torch.cuda.is_available():
            return bool(torch.cuda.is_bf16_supported())
    from retrieval.embeddings import native_bf16

    return native_bf16()


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads share one core's vector units)."""
    try:
        logical = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        logical = os.cpu_count() or 1
    per_core = 1
    with contextlib.suppress(OSError, ValueError):
        siblings = open("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list").read().strip()
        per_core = sum(int(b) - int(a) + 1 for a, _, b in (r.partition("-") if "-" in r else (r, "", r)
                                                            for r in siblings.split(",")))
    return max(1, logical // max(1, per_core))


@contextlib.contextmanager
def cpu_training(compact_head: bool = True):
    """Thread and LM-head settings for a training run, restored afterwards.

    torch uses one thread per physical core unless OMP_NUM_THREADS says otherwise; the tokenizers' own thread pool
    is switched off (it fights torch's for the same cores); with `compact_head`, TRL's fused LM head projects only
    the positions whose label is not -100."""
    import torch

    threads = torch.get_num_threads()
    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(physical_cores())
    tok_env = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    restore = _compact_fused_head() if compact_head else None
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if tok_env is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = tok_env
        if restore:
            restore()


def _compact_fused_head():
    """Make TRL's fused LM head (trl.trainer.utils.add_fused_lm_head) take its compact path on every device: it
    gathers the hidden states of the labelled positions, `hidden[labels != -100]`, before the projection. Returns
    the undo, or None when this TRL has no such switch (training is then correct, only slower)."""
    try:
        from trl.trainer import utils as trl_utils
    except ImportError:
        return None
    original = getattr(trl_utils, "_use_triton", None)
    if original is None:
        return None
    # The name is read at call time inside the fused forward; only the compaction decision reads it there (the
    # kernel module keeps its own binding, so the tiles still run as torch ops on the CPU).
    trl_utils._use_triton = lambda device: True

    def restore():
        trl_utils._use_triton = original
    return restore


def train_speed(trainer, result) -> dict:
    """Seconds inside trainer.train() (no model load, no saving), the real (non-pad) tokens it processed, and their
    ratio. The tokens are TRL's own count (`num_tokens`: attention-mask sum, or the flattened length when
    padding-free)."""
    seconds = float(result.metrics.get("train_runtime", 0.0))
    tokens = getattr(trainer, "_total_train_tokens", None)
    if tokens is None:
        logged = [h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h]
        tokens = logged[-1] if logged else 0
    tokens = int(tokens)
    return {"train_seconds": round(seconds, 2), "train_tokens": tokens,
            "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None}
