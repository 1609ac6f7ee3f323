"""What each grounding step adds: the world's fact questions through `DialogueEngine.say` under cumulative variants,
all in one run on one loaded model. Prints one JSON line per variant, then a summary line.

    .venv/bin/python benchmarks/bench_grounding.py --config configs/sealed.yaml [--file FACTS.jsonl] [--limit N]

Variants, each adding one step to the previous:
  foundation        the foundation's generation: 4 whole chunks, repetition penalty 1.1 over prompt and reply,
                    free generation, always answers
  +sentences        the 3 best evidence sentences instead of whole chunks
  +idk_gate         "I do not know" when the evidence is weak or lore hidden from the NPC answers better
  +decoding         repetition penalty 1.0 over generated tokens only, +2 copy bias on evidence tokens
  +support_check    hybrid: a reply whose names/numbers are unsupported, or that misses the evidence's answer,
                    is replaced by the extracted evidence
  +raft             (with --raft-adapter) +support_check, generating with a RAFT grounding adapter
  +extract          the shipped default: the best 2 evidence sentences in the character's voice markers
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.config import EternaConfig  # noqa: E402
from app.dialogue import DialogueEngine  # noqa: E402
from app.evaluation.facts import facts_report, load_fact_items  # noqa: E402

VARIANTS = [
    ("foundation", dict(whole_chunks=True, evidence_sentences=4, min_evidence=-100.0, hidden_margin=None,
                        repetition_penalty=1.1, penalty_over="all", copy_bias=0.0, answer="generate",
                        answer_both="generate", support_check=False, on_unsupported="keep")),
    ("+sentences", dict(whole_chunks=False, evidence_sentences=3)),
    ("+idk_gate", dict(min_evidence=0.6, hidden_margin=0.05)),
    ("+decoding", dict(repetition_penalty=1.0, penalty_over="generated", copy_bias=2.0)),
    ("+support_check", dict(answer="hybrid", answer_both="hybrid", support_check=True, on_unsupported="extract")),
    ("+raft", dict()),  # only with --raft-adapter; the adapter is set below
    ("+extract", dict(answer="extract")),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(REPO / "configs" / "eterna.yaml"))
    ap.add_argument("--file", help="fact items (default: paths.eval/facts.jsonl)")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--only", help="comma-separated variant names to run (the others are skipped)")
    ap.add_argument("--raft-adapter", help="a grounding adapter from `eterna train raft` (adds the +raft variant)")
    args = ap.parse_args()
    cfg = EternaConfig.load(Path(args.config))
    raft = Path(args.raft_adapter).resolve() if args.raft_adapter else None
    cfg = cfg.model_copy(update={"paths": cfg.paths.model_copy(update={"sessions": None}),
                                 "grounding": cfg.grounding.model_copy(update={"adapter": raft})})
    items = load_fact_items(Path(args.file) if args.file else cfg.paths.eval / "facts.jsonl")
    if args.limit:
        items = items[: args.limit]
    engine = DialogueEngine.from_settings(cfg)
    grounding, generation = cfg.grounding, cfg.generation
    summary = {}
    for name, change in VARIANTS:
        if name == "+raft" and raft is None:
            continue
        grounding = grounding.model_copy(update={**change, "adapter": raft if name == "+raft" else None})
        if args.only and name not in args.only.split(","):
            continue
        # the foundation penalised repetition over the whole prompt; later variants use grounding's own penalty
        engine.config = cfg.model_copy(update={"grounding": grounding, "generation": generation})
        t0 = time.perf_counter()
        rep = facts_report(engine, items)
        rep = {"benchmark": "grounding", "world": cfg.world.name, "variant": name, **rep,
               "seconds": round(time.perf_counter() - t0, 1)}
        print(json.dumps(rep), flush=True)
        summary[name] = {k: rep[k] for k in ("contains_gold", "idk_correct", "spoiler_leaks", "p50_ms")}
    print(json.dumps({"benchmark": "grounding_summary", "world": cfg.world.name, "n": len(items), **summary}))


if __name__ == "__main__":
    main()
