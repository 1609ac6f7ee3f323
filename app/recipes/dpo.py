"""`eterna train dpo`: preference-tune one character's voice on its preference pairs (tuning/dpo.py), continuing its
SFT adapter when there is one."""

from __future__ import annotations

from pathlib import Path

from app.recipes import checkpoint_options, register
from retrieval.errors import EternaError
from tuning.dpo import DPORecipe


def options(sp) -> None:
    sp.add_argument("--npc", required=True)
    sp.add_argument("--data", help="JSONL {prompt, chosen, rejected} (default: paths.preferences/<npc>.jsonl); "
                                   "with --self-pairs the style set (default: paths.style/<npc>.jsonl)")
    sp.add_argument("--self-pairs", action="store_true", help="make the pairs from the model's own failures: n "
                    "candidates per style-set prompt, scored (app/selfpairs.py); the style set's reply or the best "
                    "clean candidate is chosen, the worst looping/rambling/out-of-voice one rejected")
    sp.add_argument("--candidates", type=int, default=4, metavar="N", help="--self-pairs: candidates per prompt")
    sp.add_argument("--pairs-out", metavar="FILE", help="--self-pairs: where the pairs go (default: "
                                                        "<out>.self-pairs.jsonl, with a manifest beside it)")
    sp.add_argument("--out", help="adapter folder (default: paths.adapters/<npc>-dpo)")
    start = sp.add_mutually_exclusive_group()
    start.add_argument("--from-adapter", metavar="DIR", help="continue this adapter; it is also the DPO reference "
                                                             "(default: paths.adapters/<npc> when it exists)")
    start.add_argument("--from-base", action="store_true", help="train a fresh adapter on the base model")
    checkpoint_options(sp)


def train(cfg, args, recipe: DPORecipe) -> tuple[dict, str]:
    from app.cli.common import main_rank, quiet_datasets
    from app.config import Cast
    from app.prompt import system_prompt
    from tuning.base import prepare_model
    from tuning.dpo import train_dpo
    from tuning.methods import get_method

    quiet_datasets()
    npc = Cast.load(cfg.paths.npcs, cfg.world).get(args.npc)
    out = Path(args.out) if args.out else cfg.paths.adapters / f"{npc.id}-dpo"
    if args.self_pairs:
        data = _self_pairs(cfg, args, npc, out)
    else:
        data = Path(args.data) if args.data else cfg.data_path("preferences") / f"{npc.id}.jsonl"
    if args.from_adapter:
        start = Path(args.from_adapter)
    elif args.from_base:
        start = None
    else:
        default = cfg.paths.adapters / npc.id
        start = default if default.is_dir() else None
    if start is not None and "method" in recipe.model_fields_set:
        raise EternaError(f"--method applies to a fresh adapter; {start} keeps its own method (add --from-base)")
    if start is None:
        get_method(recipe.method)  # fail before loading anything
    base = prepare_model(cfg.models.llm, cfg.models.cache_dir)
    manifest = train_dpo(base, data, out, recipe, start=start, system=system_prompt(npc, cfg.world, cfg.prompts),
                         npc=npc.id, base_spec=cfg.models.llm, log=main_rank(), resume=args.resume,
                         keep_checkpoints=args.keep_checkpoints)
    m = manifest["metrics"]
    held = m["held_out"]
    figures = (f"held-out ({m['held_out_pairs']} pairs) reward margin {held['before']['reward_margin']:.3f} -> "
               f"{held['after']['reward_margin']:.3f}, accuracy {held['before']['reward_accuracy']:.2f} -> "
               f"{held['after']['reward_accuracy']:.2f}" if held else "no held-out pairs")
    origin = f"from {start}" if start else "from the base"
    return ({"adapter": str(out), **manifest},
            f"DPO adapter for {npc.id} ({origin}) -> {out}: {m['steps']} steps, loss {m['first_loss']} -> "
            f"{m['last_loss']}; {figures}; {m['seconds']} s. Set `adapter: {out}` for {npc.id} in your npcs file "
            "to use it.")


def _self_pairs(cfg, args, npc, out: Path) -> Path:
    """The pairs file made from the character's own candidates on its style set's prompts."""
    from app.dialogue import DialogueEngine
    from app.selfpairs import self_pairs, write_pairs
    from tuning.data import load_chat_examples

    if args.candidates < 2:
        raise EternaError(f"--candidates {args.candidates}: self-pairs need at least 2 candidates per prompt")
    style = Path(args.data) if args.data else cfg.data_path("style") / f"{npc.id}.jsonl"
    examples = load_chat_examples(style)  # a bad file fails here, before any model loads
    engine = DialogueEngine.from_settings(cfg)
    rows, report = self_pairs(engine, npc.id, examples, n=args.candidates, use_adapter=True)
    engine.generator.close()
    path = Path(args.pairs_out) if args.pairs_out else out.with_name(out.name + ".self-pairs.jsonl")
    return write_pairs(path, rows, report, style)


register("dpo", DPORecipe, train, "preference-tune one NPC's voice with DPO on its preference pairs",
         options=options, flags={"learning_rate": ("--lr", "--learning-rate")})
