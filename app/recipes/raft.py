"""`eterna train raft`: a grounded-answer adapter from the world's own index (RAFT): the items (tuning/raft.py)
rendered with the engine's own fact prompt (app/raft.py), then the SFT recipe."""

from __future__ import annotations

from pathlib import Path

from app.recipes import register
from retrieval.errors import EternaError
from tuning.raft import RaftRecipe


def options(sp) -> None:
    from app.cli.common import add_flags

    sp.add_argument("--npc", help="one character's scope and voice")
    sp.add_argument("--all", action="store_true", help="the whole cast: one shared grounding adapter")
    sp.add_argument("--chapter", type=int, default=1, help="lore up to this chapter only (default 1: no spoilers)")
    sp.add_argument("--out", help="adapter folder (default: paths.adapters/raft-<npc|all>)")
    add_flags(sp, json_flag=False, index=True)


def train(cfg, args, recipe: RaftRecipe) -> tuple[dict, str]:
    from app.cli.common import main_rank
    from app.config import Cast
    from app.raft import train_raft

    if bool(args.npc) == bool(args.all):
        raise EternaError("train raft needs --npc ID or --all")
    cast = Cast.load(cfg.paths.npcs, cfg.world)
    npcs = [cast.get(args.npc)] if args.npc else cast.npcs
    out = Path(args.out) if args.out else cfg.paths.adapters / f"raft-{args.npc or 'all'}"
    manifest = train_raft(cfg, npcs, out, recipe, name=args.npc or "all", chapter=args.chapter, log=main_rank())
    m = manifest["metrics"]
    return ({"adapter": str(out), **manifest},
            f"grounding adapter -> {out}: {manifest['raft']['items']} examples, {m['steps']} steps, loss "
            f"{m['first_loss']} -> {m['last_loss']}, {m['seconds']} s. Set `grounding.adapter: {out}` in the config "
            "to use it.")


register("raft", RaftRecipe, train, "grounded-answer adapter from the world's own index (RAFT)", options=options,
         flags={"learning_rate": ("--lr", "--learning-rate"), "item_seed": ("--seed",), "seed": ("--train-seed",)})
