"""Can a Book be served by a student a quarter of the base's size? One JSON line.

Distils the default world's book character (configs/eterna.yaml, the first NPC with role `book`, or --npc) with
`app.distill.distill_npc` into a temporary folder, then prints: the student's share of the base's parameters
(goal <= 0.25), its greedy decoding speed against the teacher's on the same held-out prompts (goal >= 3x), the
voice-marker rate of teacher and student replies (goal: within 10 points) and the top-1 agreement with the teacher.

    .venv/bin/python benchmarks/distill_book.py --quick   # a few minutes on 2 CPU cores
    .venv/bin/python benchmarks/distill_book.py           # the recipe's defaults (128 dialogues, 4 epochs; ~14 min)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.config import Cast, EternaConfig  # noqa: E402
from app.distill import distill_npc  # noqa: E402
from tuning.distill import DistillRecipe  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(REPO / "configs" / "eterna.yaml"))
    ap.add_argument("--npc", help="default: the cast's first book")
    ap.add_argument("--quick", action="store_true", help="16 dialogues of 32 tokens, 24 steps")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--dialogues", type=int, help="training dialogues (default: the recipe's)")
    ap.add_argument("--chapter", type=int, default=1)
    ap.add_argument("--cache-dir", help="where the converted base model is (default: models.cache_dir)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    cfg = EternaConfig.load(Path(args.config))
    if args.cache_dir:
        cfg = cfg.model_copy(update={"models": cfg.models.model_copy(update={"cache_dir": Path(args.cache_dir)})})
    cast = Cast.load(cfg.paths.npcs, cfg.world)
    npc = cast.get(args.npc) if args.npc else next((n for n in cast.npcs if n.role == "book"), None)
    if npc is None:
        sys.exit(f"{cfg.paths.npcs}: no NPC with role book; pass --npc ID")
    quick = dict(dialogues=16, max_new_tokens=32, max_steps=24) if args.quick else {}
    if args.dialogues:
        quick["dialogues"] = args.dialogues
    recipe = DistillRecipe(layers=args.layers, **quick)
    with tempfile.TemporaryDirectory() as tmp:
        m = distill_npc(cfg, cast, npc.id, Path(tmp) / "student", recipe, chapter=args.chapter, log=True)
    metrics, st = m["metrics"], m["student"]
    voice = metrics["voice_markers"]
    gap = None if voice["teacher"] is None else round(abs(voice["teacher"] - voice["student"]) * 100, 1)
    print(json.dumps({
        "benchmark": "distill_book", "npc": npc.id, "quick": args.quick, "layers": st["layers"],
        "intermediate": st["intermediate"], "params": st["parameters"], "teacher_params": st["teacher_parameters"],
        "params_ratio": st["params_ratio"], "size_mb": st["size_mb"],
        "tokens_per_s": {"teacher": metrics["speed"]["teacher_tokens_per_s"],
                         "student": metrics["speed"]["student_tokens_per_s"]},
        "speed_ratio": metrics["speed"]["ratio"], "voice_markers": voice, "voice_gap_points": gap,
        "student_empty_replies": metrics.get("student_empty_replies"),
        "teacher_generation_s": metrics.get("teacher_generation_s"),
        "top1_agreement": metrics["agreement"], "held_out": m["data"]["held_out"], "train": m["data"]["train"],
        "steps": metrics["steps"], "loss": [metrics["first_loss"], metrics["last_loss"]],
        "seconds": metrics["seconds"],
        "goals": {"params_ratio<=0.25": st["params_ratio"] <= 0.25, "speed>=3x": metrics["speed"]["ratio"] >= 3,
                  "voice_within_10_points": gap is not None and gap <= 10},
        "samples": metrics["samples"]}, ensure_ascii=False))


if __name__ == "__main__":
    main()
