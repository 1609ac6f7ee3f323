"""The student's shape: a smaller causal LM with the teacher's tokenizer, built from the teacher's own weights.

    teacher = merged_teacher(base_dir, adapter_path)           # base + the character's adapter, merged
    plan = plan_student(teacher, layers=3, max_ratio=0.25)       # which layers, how wide, how many parameters
    student = build_student(teacher, plan, init="teacher")

`init="teacher"` copies the embeddings, a spaced subset of the decoder layers (first and last included), the final
norm and the output head; when the plan narrows the feed-forward blocks, each copied block keeps its most important
neurons (largest product of gate, up and down weight norms). `init="fresh"` is the same shape, randomly initialised.
Parameter counts are honest: tied embeddings count once, and on small models the vocabulary dominates them.
"""

from __future__ import annotations

import copy
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from retrieval.errors import AdapterError, ConfigError

_LAYER = re.compile(r"(^|\.)layers\.(\d+)\.")
_MLP = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class StudentPlan:
    layers: list[int]  # teacher layer indices copied, in order
    intermediate: int  # feed-forward width of every student layer
    parameters: int
    teacher_parameters: int

    @property
    def ratio(self) -> float:
        return self.parameters / self.teacher_parameters

    def to_json(self, max_ratio: float) -> dict:
        return {**asdict(self), "params_ratio": round(self.ratio, 4), "within_budget": self.ratio <= max_ratio}


def merged_teacher(base_dir: Path, adapter: Path | None):
    """(teacher model, tokenizer): the base in float32, with the character's adapter merged into its weights."""
    from tuning.adapters import attach_adapter
    from tuning.base import load_base, model_fingerprint

    model, tok = load_base(base_dir, "float32")
    if adapter is not None:
        peft_model = attach_adapter(model, "teacher", adapter, model_fingerprint(base_dir))
        try:
            model = peft_model.merge_and_unload()
        except (AttributeError, ValueError, NotImplementedError) as e:
            raise AdapterError(f"{adapter}: this adapter cannot be merged into the base ({e}); distillation needs "
                               "a weight adapter (lora, dora, ia3): retrain the character with one") from None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tok


def spaced_layers(n_teacher: int, n: int) -> list[int]:
    """n of the teacher's layer indices, evenly spaced, first and last included (n=1: the first)."""
    if n == 1:
        return [0]
    return sorted({round(i * (n_teacher - 1) / (n - 1)) for i in range(n)})


def _student_config(teacher_config, layers: list[int], intermediate: int):
    cfg = copy.deepcopy(teacher_config)
    cfg.num_hidden_layers = len(layers)
    cfg.intermediate_size = intermediate
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = [cfg.layer_types[j] for j in layers]
    return cfg


def count_parameters(config) -> int:
    """Parameters of a model built from `config` (tied weights once), without allocating any."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def plan_student(teacher, layers: int, max_ratio: float = 0.25, intermediate: int | None = None) -> StudentPlan:
    """Pick the student's layers and feed-forward width. `intermediate=None`: the widest multiple of 64 (up to the
    teacher's) that keeps the student within `max_ratio` of the teacher's parameters, or the teacher's width when
    no width fits (the embeddings alone exceed the budget: the manifest then says `within_budget: false`)."""
    cfg = teacher.config
    n_teacher = cfg.num_hidden_layers
    if not 1 <= layers < n_teacher:
        raise ConfigError(f"--layers {layers}: a student has 1 to {n_teacher - 1} layers (the teacher has "
                          f"{n_teacher}); pass a smaller --layers")
    full = cfg.intermediate_size
    if intermediate is not None and not 1 <= intermediate <= full:
        raise ConfigError(f"--intermediate {intermediate}: must be 1 to the teacher's {full}")
    idx = spaced_layers(n_teacher, layers)
    total = sum(p.numel() for p in teacher.parameters())

    def size(width: int) -> int:
        return count_parameters(_student_config(cfg, idx, width))

    if intermediate is None:
        intermediate = full
        if size(full) > max_ratio * total:
            fits = [w for w in range(64, full, 64) if size(w) <= max_ratio * total]
            intermediate = max(fits) if fits else full
    return StudentPlan(idx, intermediate, size(intermediate), total)


def _keep_neurons(sd: dict, prefix: str, width: int) -> list[int]:
    import torch

    gate, up, down = (sd[f"{prefix}mlp.{m}.weight"] for m in _MLP)  # (F, H), (F, H), (H, F)
    score = gate.norm(dim=1) * up.norm(dim=1) * down.norm(dim=0)  # (F,)
    return sorted(torch.topk(score, width).indices.tolist())


def build_student(teacher, plan: StudentPlan, init: str = "teacher"):
    """A float32 student on the CPU, in train mode."""
    import torch
    from transformers import AutoModelForCausalLM

    cfg = _student_config(teacher.config, plan.layers, plan.intermediate)
    student = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    student.generation_config = copy.deepcopy(teacher.generation_config)
    if init == "fresh":
        return student.train()
    if init != "teacher":
        raise ConfigError(f"--init {init!r}: choose teacher or fresh")
    src = teacher.state_dict()
    narrow = plan.intermediate < teacher.config.intermediate_size
    kept: dict[int, list[int]] = {}
    out = {}
    for key in student.state_dict():
        m = _LAYER.search(key)
        if m is None:
            out[key] = src[key].clone()
            continue
        i = int(m.group(2))
        j = plan.layers[i]
        tkey = key[: m.start(2)] + str(j) + key[m.end(2):]
        w = src[tkey]
        part = next((p for p in _MLP if f"mlp.{p}." in key), None)
        if narrow and part is not None:
            if not all(f"{tkey.split('mlp.')[0]}mlp.{p}.weight" in src for p in _MLP):
                raise ConfigError("--intermediate: this architecture's feed-forward blocks are not gate/up/down "
                                  "projections; leave --intermediate out")
            if j not in kept:
                kept[j] = _keep_neurons(src, tkey.split("mlp.")[0], plan.intermediate)
            w = w[:, kept[j]] if part == "down_proj" else w[kept[j]]  # (H, F') | (F', H)
        out[key] = w.clone()
    student.load_state_dict(out, strict=True)
    if getattr(cfg, "tie_word_embeddings", False):
        student.tie_weights()
    return student.train()
