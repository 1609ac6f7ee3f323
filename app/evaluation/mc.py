"""Multiple-choice scoring the lm-evaluation-harness way: the log-likelihood of each choice given the question.

    eterna eval mc --file FILE --format arc|mmlu|hellaswag [--adapter PATH] [--limit N] [--json]

`accuracy`: argmax of the summed log-probability of the choice's tokens; `acc_norm`: the same divided by the
choice's length in characters (lm-eval's acc_norm). Context and continuation are tokenised together and the
continuation's tokens are those after the context's (lm-eval's rule), so a choice's first token may merge with the
space before it exactly as in lm-eval.

Formats (one JSON object per line):
- arc: llm-foundry `{query, choices, gold}` (as in ../shared/data/arc) or Hugging Face `{question, choices: {text,
  label}, answerKey}`; context "Question: ...\\nAnswer:", continuations " <choice>".
- mmlu: `{question, choices, answer}` (answer an index or a letter); the lm-eval prompt with A-D listed, and
  continuations " A" ... " D".
- hellaswag: `{ctx, endings, label}` or llm-foundry `{query, choices, gold}`; continuations " <ending>".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from retrieval.errors import EternaError
from retrieval.fileio import read_jsonl

FORMATS = ("arc", "mmlu", "hellaswag")


@dataclass(frozen=True)
class MCItem:
    context: str
    choices: tuple[str, ...]  # continuations, with their leading space
    gold: int


def _item(fmt: str, obj: dict, where: str) -> MCItem:
    try:
        if fmt in ("arc", "hellaswag") and "query" in obj:
            ctx = obj["query"] if fmt == "hellaswag" else obj["query"].rstrip() + "\nAnswer:"
            return MCItem(ctx, tuple(" " + c for c in obj["choices"]), int(obj["gold"]))
        if fmt == "arc":
            labels = list(obj["choices"]["label"])
            return MCItem(f"Question: {obj['question']}\nAnswer:", tuple(" " + c for c in obj["choices"]["text"]),
                          labels.index(obj["answerKey"]))
        if fmt == "hellaswag":
            return MCItem(obj["ctx"], tuple(" " + e for e in obj["endings"]), int(obj["label"]))
        letters = "ABCDEFGHIJ"[: len(obj["choices"])]
        body = "".join(f"\n{ltr}. {c}" for ltr, c in zip(letters, obj["choices"]))
        ans = obj["answer"]
        gold = letters.index(ans) if isinstance(ans, str) else int(ans)
        return MCItem(f"{obj['question'].strip()}{body}\nAnswer:", tuple(" " + ltr for ltr in letters), gold)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise EternaError(f"{where}: not a {fmt} item ({type(e).__name__}: {e}); see `eterna eval mc --help`") \
            from None


def load_mc(path: Path, fmt: str, limit: int | None = None) -> list[MCItem]:
    if fmt not in FORMATS:
        raise EternaError(f"unknown format {fmt!r}; use {', '.join(FORMATS)}")
    path = Path(path)
    items = []
    for n, obj in read_jsonl(path):
        items.append(_item(fmt, obj, f"{path}:{n}"))
        if limit and len(items) >= limit:
            break
    if not items:
        raise EternaError(f"{path}: no items")
    return items


def score_mc(model, tokenizer, items: list[MCItem], batch_size: int = 16, progress=None) -> dict:
    """{"accuracy", "acc_norm", "n", "correct": [bool per item]} for a causal LM (transformers)."""
    import numpy as np
    import torch

    seqs, spans = [], []
    for it in items:
        ctx = tokenizer(it.context, add_special_tokens=False)["input_ids"]
        for c in it.choices:
            whole = tokenizer(it.context + c, add_special_tokens=False)["input_ids"]
            n_ctx = len(ctx) if whole[: len(ctx)] == ctx else len(ctx) - 1  # the space may merge into the context
            seqs.append(whole)
            spans.append((n_ctx, len(whole)))
    lls = np.zeros(len(seqs))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))  # length buckets: little padding
    model.eval()
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b: b + batch_size]
            width = max(len(seqs[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):
                ids[r, : len(seqs[i])] = torch.tensor(seqs[i])
                mask[r, : len(seqs[i])] = 1
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
            for r, i in enumerate(idx):
                start, end = spans[i]
                targets = ids[r, start:end]
                lls[i] = float(logp[r, start - 1: end - 1].gather(1, targets[:, None]).sum())
            if progress:
                progress(len(idx))
    correct, correct_norm, k = [], [], 0
    for it in items:
        ll = lls[k: k + len(it.choices)]
        norm = ll / np.array([len(c) for c in it.choices])
        correct.append(int(np.argmax(ll)) == it.gold)
        correct_norm.append(int(np.argmax(norm)) == it.gold)
        k += len(it.choices)
    return {"accuracy": round(float(np.mean(correct)), 4), "acc_norm": round(float(np.mean(correct_norm)), 4),
            "n": len(items), "correct": correct, "correct_norm": correct_norm}


def forgetting_report(model, tokenizer, model_dir, items: list[MCItem], adapters: dict, seed: int = 0) -> dict:
    """Multiple-choice accuracy of the base and of each adapter on the same items: the delta, its paired bootstrap
    interval and McNemar's exact p (does a character's adapter cost general knowledge?)."""
    import numpy as np

    from app.evaluation.stats import mcnemar_exact, paired_diff_ci
    from tuning.adapters import attach_adapter, use_adapter
    from tuning.base import model_fingerprint

    base = score_mc(model, tokenizer, items)
    fingerprint = model_fingerprint(model_dir)
    out = {"n": len(items), "base": {k: base[k] for k in ("accuracy", "acc_norm")}, "adapters": {}}
    peft = model
    for k, (npc, path) in enumerate(sorted(adapters.items())):
        peft = attach_adapter(peft, npc, Path(path), fingerprint)
        with use_adapter(peft, npc):
            got = score_mc(peft, tokenizer, items)
        a, b = np.array(base["correct"], dtype=float), np.array(got["correct"], dtype=float)
        d, lo, hi = paired_diff_ci(a, b, seed=seed + k)
        _, _, p = mcnemar_exact(a > 0.5, b > 0.5)
        out["adapters"][npc] = {"accuracy": got["accuracy"], "acc_norm": got["acc_norm"], "delta": round(d, 4),
                                "low": round(lo, 4), "high": round(hi, 4), "p": p}
    return out
