"""DPO pairs against the model's own failures (`eterna train dpo --self-pairs`): for each prompt of a character's
style set, n candidates are decoded by the engine as a player would meet them (best-of-n, app/bestof.py: the
first as configured, the rest sampled, each through the output guard) and scored. A candidate *fails* when it
loops, runs past the target length, misses every signature phrase of the character, invents names or numbers,
breaks character, is not clean text, or is the deflection. The pairs:

- chosen = the style set's own reply, rejected = the worst failing candidate;
- chosen = the best candidate when it fails nothing, rejected = the worst failing one.

A prompt whose candidates all pass gives no pair: there is nothing of the model's own to push away from. The pairs
file is written atomically with a manifest beside it (what made it: the engine's model, adapter, n, counts).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from retrieval.errors import CorpusError
from retrieval.fileio import atomic_write_text

FAILURES = ("loop", "length", "invented", "breaks", "unclean")


def failures(cand: dict, has_phrases: bool) -> list[str]:
    """What is wrong with one scored candidate (a row of `Reply.context["best_of"]["candidates"]`)."""
    f = cand["features"]
    out = [k for k in FAILURES if f.get(k, 0) > 0]
    if has_phrases and not f.get("voice"):
        out.append("no_voice")
    if cand["score"] == float("-inf"):
        out.append("deflected")
    return out


def self_pairs(engine, npc: str, examples: list[list[dict]], *, n: int = 4, use_adapter: bool = True,
               progress=None) -> tuple[list[dict], dict]:
    """(DPO rows {prompt, chosen, rejected, why}, a report) from `examples` (chat examples whose last turn is the
    character's reply; the last user turn is the prompt, earlier turns are left out)."""
    from app.bestof import BestOfConfig
    from app.evaluation.replies import voice_phrases

    if n < 2:
        raise CorpusError(f"--candidates {n}: self-pairs need at least 2 candidates per prompt")
    gen = engine.config.generation
    best = BestOfConfig(**{**gen.best_of.model_dump(), "n": n})  # validated again: n within its bounds
    engine = engine.variant(config=engine.config.model_copy(
        update={"generation": gen.model_copy(update={"best_of": best})}))
    spec = engine.cast.get(npc)
    has_phrases = bool(voice_phrases(spec))
    run, rows, counts = uuid.uuid4().hex[:8], [], {"prompts": 0, "candidates": 0, "failing": 0}
    by_failure: dict[str, int] = {}
    for i, messages in enumerate(examples):
        if len(messages) < 2 or messages[-1]["role"] != "assistant" or messages[-2]["role"] != "user":
            continue
        prompt, gold = messages[-2]["content"], messages[-1]["content"]
        reply = engine.say(spec.id, prompt, session=f"self-pairs-{run}-{i}", route="style", remember=False,
                           use_adapter=use_adapter)
        cands = reply.context.get("best_of", {}).get("candidates", [])
        counts["prompts"] += 1
        counts["candidates"] += len(cands)
        failing = [(c, failures(c, has_phrases)) for c in cands]
        failing = [(c, why) for c, why in failing if why]
        counts["failing"] += len(failing)
        for _, why in failing:
            for w in why:
                by_failure[w] = by_failure.get(w, 0) + 1
        if failing:
            worst, why = min(failing, key=lambda cw: cw[0]["score"])
            rows.append({"prompt": prompt, "chosen": gold, "rejected": worst["text"], "why": why})
            clean_best = [c for c in cands if not failures(c, has_phrases)]
            if clean_best:
                top = max(clean_best, key=lambda c: c["score"])
                if top["text"] != gold:
                    rows.append({"prompt": prompt, "chosen": top["text"], "rejected": worst["text"], "why": why})
        if progress is not None:
            progress(i + 1, len(examples))
    report = {**counts, "pairs": len(rows), "failures": dict(sorted(by_failure.items())), "n": n,
              "adapter": engine.adapter_names.get(spec.id) if use_adapter else None}
    return rows, report


def write_pairs(path: Path, rows: list[dict], report: dict, source: Path) -> Path:
    """The pairs as DPO JSONL (atomic), and `<path>.manifest.json` saying what made them."""
    if not rows:
        raise CorpusError(f"{source}: no self-pairs: every candidate passed (nothing of the model's own to reject); "
                          "use more --candidates or a preference file")
    text = "".join(json.dumps({k: r[k] for k in ("prompt", "chosen", "rejected")}, ensure_ascii=False) + "\n"
                   for r in rows)
    atomic_write_text(path, text)
    manifest = {"kind": "self-pairs", "source": str(source), "made": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                 time.gmtime()), **report}
    atomic_write_text(path.with_name(path.name + ".manifest.json"), json.dumps(manifest, indent=1) + "\n")
    return path
