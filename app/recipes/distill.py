"""`eterna train distill`: one character (a book) distilled into a small standalone student model (app/distill.py
writes its training dialogue from its own lore, tuning/distill.py trains the student)."""

from __future__ import annotations

from pathlib import Path

from app.recipes import register
from tuning.distill import DistillRecipe


def options(sp) -> None:
    sp.add_argument("--npc", required=True)
    sp.add_argument("--out", help="checkpoint folder (default: paths.adapters/<npc>-student)")
    sp.add_argument("--chapter", type=int, default=1, help="lore up to this chapter (default 1: the student may "
                                                           "repeat what it learns, later chapters would be spoilers)")


def train(cfg, args, recipe: DistillRecipe) -> tuple[dict, str]:
    from app.config import Cast
    from app.distill import distill_npc

    cast = Cast.load(cfg.paths.npcs, cfg.world)
    npc = cast.get(args.npc)
    out = Path(args.out) if args.out else cfg.paths.adapters / f"{npc.id}-student"
    manifest = distill_npc(cfg, cast, npc.id, out, recipe, chapter=args.chapter, log=True)
    m, st = manifest["metrics"], manifest["student"]
    agree, speed, voice = m["agreement"]["after"], m["speed"], m["voice_markers"]
    return ({"model": str(out), **manifest},
            f"student of {npc.id} -> {out}: layers {st['layers']} of the teacher's, {st['parameters']:,} parameters "
            f"({st['params_ratio']:.0%} of the teacher), {st['size_mb']} MB; {m['steps']} steps, loss "
            f"{m['first_loss']} -> {m['last_loss']}; top-1 agreement {m['agreement']['before']['top1']} -> "
            f"{agree['top1']} (KL {agree['kl']}); {speed['student_tokens_per_s']} vs {speed['teacher_tokens_per_s']} "
            f"tokens/s ({speed['ratio']}x); voice markers teacher {voice['teacher']} student {voice['student']}; "
            f"{m['seconds']} s. Set `model: {out}` for {npc.id} in your npcs file to use it.")


register("distill", DistillRecipe, train, "distil one character (a book) into a small standalone student model",
         options=options, flags={"learning_rate": ("--lr", "--learning-rate")})
