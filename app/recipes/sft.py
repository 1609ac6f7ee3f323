"""`eterna train sft`: one character's voice on its style set (tuning/sft.py): the data gate and the lore linter first,
then TRL's SFTTrainer with a PEFT method."""

from __future__ import annotations

import sys
from pathlib import Path

from app.recipes import checkpoint_options, register
from tuning.sft import SFTRecipe


def options(sp) -> None:
    from tuning.formats import FORMATS

    sp.add_argument("--npc", required=True)
    sp.add_argument("--data", help="chat data: messages, alpaca or sharegpt rows, JSONL or a JSON array "
                                   "(default: paths.style/<npc>.jsonl)")
    sp.add_argument("--out", help="adapter folder (default: paths.adapters/<npc>)")
    sp.add_argument("--rank", type=int, help="the method's rank: params.r")
    sp.add_argument("--format", help="force the data format (default: detected): " + ", ".join(FORMATS))
    sp.add_argument("--skip-bad-rows", action="store_true",
                    help="train on the rows that pass the data gate instead of refusing data with errors")
    checkpoint_options(sp)


def extra(args) -> dict:
    return {"params": {"r": args.rank}} if args.rank is not None else {}


def train(cfg, args, recipe: SFTRecipe) -> tuple[dict, str]:
    from app.cli.common import main_rank, quiet_datasets
    from app.config import Cast
    from app.prompt import system_prompt
    from app.validate import lore_linter
    from retrieval.corpus import load_corpus
    from tuning.base import prepare_model
    from tuning.gate import gate_file
    from tuning.sft import train_sft

    quiet_datasets()
    npc = Cast.load(cfg.paths.npcs, cfg.world).get(args.npc)
    data = Path(args.data) if args.data else cfg.data_path("style") / f"{npc.id}.jsonl"
    out = Path(args.out) if args.out else cfg.paths.adapters / npc.id
    system = system_prompt(npc, cfg.world, cfg.prompts)
    gate = gate_file(data, kind="chat", fmt=args.format)  # the rows' own problems, before any model is prepared
    if not gate.ok and not (args.skip_bad_rows and gate.items) and main_rank():
        print(gate.render(limit=10), file=sys.stderr)
        gate.check(args.skip_bad_rows)
    facts = lore_linter(load_corpus(cfg.paths.corpus), [system]) if cfg.paths.corpus.is_dir() else None
    base = prepare_model(cfg.models.llm, cfg.models.cache_dir)
    manifest = train_sft(base, data, out, recipe, system=system, npc=npc.id, base_spec=cfg.models.llm, log=main_rank(),
                         skip_bad_rows=args.skip_bad_rows, facts=facts, data_format=args.format, resume=args.resume,
                         keep_checkpoints=args.keep_checkpoints)
    m = manifest["metrics"]
    return ({"adapter": str(out), **manifest},
            f"adapter for {npc.id} -> {out}: {m['steps']} steps, loss {m['first_loss']} -> {m['last_loss']}, "
            f"{m['seconds']} s. Set `adapter: {out}` for {npc.id} in your npcs file to use it.")


register("sft", SFTRecipe, train, "fine-tune one NPC's voice on its style set (LoRA by default)", options=options,
         extra=extra, flags={"learning_rate": ("--lr", "--learning-rate")})
