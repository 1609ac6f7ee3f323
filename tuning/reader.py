"""The answer reader: a cross-encoder that reads a question with each evidence sentence and scores how likely the
sentence holds the answer (LoRA on the default embedder's MiniLM, with a one-logit head), so a fact reply can say
the answer-bearing sentence first, and that sentence alone when the reader is sure.

    rows = [{"question": ..., "candidates": [["title", "sentence"], ...], "gold": [false, true, ...]}, ...]
    train_reader(rows, base_dir, out_dir, ReaderRecipe(), base_spec="builtin:all-minilm-l6-v2", sources={...})

The loss is listwise: minus the log of the softmax mass on the candidates that hold the gold answer, over each
question's candidates (the selection's best sentences, as a turn sees them). Rows where every candidate or none holds
the answer teach nothing and are skipped. The folder holds the PEFT adapter (the head included) and the manifest.
"""

from __future__ import annotations

import random
import time
import warnings
from pathlib import Path

from pydantic import BaseModel, Field

READER_TARGETS = ["query", "key", "value", "dense"]


class ReaderRecipe(BaseModel):
    """The reader's training run (defaults: the run the shipped reader was built with)."""

    r: int = Field(16, ge=1, le=256, description="LoRA rank")
    alpha: int = Field(32, ge=1, description="LoRA alpha")
    dropout: float = Field(0.1, ge=0, lt=1, description="LoRA dropout")
    epochs: int = Field(3, ge=1, le=50, description="passes over the questions")
    learning_rate: float = Field(5e-4, gt=0, description="peak learning rate (linear warm-up over 30 questions "
                                                         "or a tenth of the run, then linear decay)")
    accumulate: int = Field(4, ge=1, description="questions per optimizer step")
    max_length: int = Field(128, ge=16, le=512, description="tokens of question and candidate together")
    seed: int = Field(0, description="seed of the shuffles, the head and the LoRA initialisation")
    threads: int = Field(0, ge=0, description="torch threads (0: the machine's cores)")
    titles: bool = Field(False, description="a candidate is read as 'section title: sentence' (else the sentence)")
    context: bool = Field(False, description="a candidate is read with the sentence before it in its chunk "
                                             "('sentence << before', so truncation cuts the context first), so 'It', "
                                             "'She' have something to refer to")


def candidate_text(title: str, sentence: str, titles: bool, context: str = "") -> str:
    text = f"{sentence} << {context}" if context else sentence
    return f"{title}: {text}" if titles and title else text


def candidate_texts(candidates: list, titles: bool, context: bool) -> list[str]:
    """What a reader reads of each candidate, (title, sentence) or (title, sentence, the sentence before it), in
    training and in a turn alike."""
    return [candidate_text(c[0], c[1], titles, c[2] if context and len(c) > 2 else "") for c in candidates]


def useful(rows: list[dict]) -> list[dict]:
    """Rows with at least one candidate that holds the answer and one that does not."""
    return [r for r in rows if any(r["gold"]) and not all(r["gold"])]


def load_model(base_dir: Path):
    """The base encoder with a fresh one-logit head (the head's 'newly initialised' report is silenced)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return AutoModelForSequenceClassification.from_pretrained(str(base_dir), num_labels=1)
    finally:
        hf_logging.set_verbosity(level)


def score_pairs(model, tok, question: str, candidates: list[str], max_length: int):
    """The model's logit for each (question, candidate) pair, shape (len(candidates),)."""
    enc = tok([question] * len(candidates), candidates, truncation=True, max_length=max_length, padding=True,
              return_tensors="pt")
    return model(**enc).logits.squeeze(-1)


def train_reader(rows: list[dict], base_dir: Path, out_dir: Path, recipe: ReaderRecipe, *, base_spec: str,
                 sources: dict, built_by: str = "eterna train reader", log=print) -> dict:
    """Train the reader on `rows` and publish it to `out_dir` (staged, then renamed into place). Returns the
    manifest."""
    import os

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    from retrieval.fileio import atomic_write_json, replace_dir, staging
    from tuning.adapters import name_base_in_peft_config
    from tuning.artifact import ADAPTER_MANIFEST, trainable_parameters, versions
    from tuning.base import base_reference

    torch.set_num_threads(recipe.threads or os.cpu_count() or 1)
    torch.manual_seed(recipe.seed)
    rng = random.Random(recipe.seed)
    train = useful(rows)
    if not train:
        raise ValueError("no question has both a candidate that holds its answer and one that does not: nothing "
                         "to learn (check the facts files' answers)")
    tok = AutoTokenizer.from_pretrained(str(base_dir))
    model = get_peft_model(load_model(base_dir), LoraConfig(
        r=recipe.r, lora_alpha=recipe.alpha, lora_dropout=recipe.dropout, target_modules=READER_TARGETS,
        task_type="SEQ_CLS"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.learning_rate, weight_decay=0.01)
    total = recipe.epochs * len(train)
    warm = max(1, min(30, total // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, 1 - s / total))
    started, curve = time.time(), []
    # the schedule steps per question (warm-up and decay in questions), before the first optimizer step of a group
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
        for epoch in range(recipe.epochs):
            rng.shuffle(train)
            loss_sum = 0.0
            for i, row in enumerate(train):
                texts = candidate_texts(row["candidates"], recipe.titles, recipe.context)
                logits = score_pairs(model, tok, row["question"], texts, recipe.max_length)
                gold = torch.tensor(row["gold"])
                loss = -(torch.logsumexp(logits[gold], 0) - torch.logsumexp(logits, 0))
                (loss / recipe.accumulate).backward()
                loss_sum += loss.item()
                if i % recipe.accumulate == recipe.accumulate - 1 or i == len(train) - 1:
                    opt.step()
                    opt.zero_grad()
                sched.step()
            curve.append(round(loss_sum / len(train), 4))
            log(f"epoch {epoch + 1}/{recipe.epochs}: loss {curve[-1]} ({time.time() - started:.0f} s)")
    model.eval()
    out_dir = Path(out_dir)
    manifest = {
        "built_by": built_by,
        "kind": "reader",
        "method": "lora",
        "base": base_reference(base_spec, base_dir),
        "trainable_parameters": trainable_parameters(model),
        "data": {**sources, "questions": len(rows), "trained_on": len(train)},
        "recipe": recipe.model_dump(),
        "metrics": {"epoch_loss": curve, "seconds": round(time.time() - started, 1)},
        "versions": versions(),
    }
    with staging(out_dir, "reader") as staged:
        model.save_pretrained(str(staged))
        (staged / "README.md").unlink(missing_ok=True)  # PEFT's model-card stub: the manifest says what built it
        name_base_in_peft_config(staged, manifest["base"])  # not this machine's path to the base
        tok.save_pretrained(str(staged))
        atomic_write_json(staged / ADAPTER_MANIFEST, manifest)
        replace_dir(staged, out_dir)
    return manifest
