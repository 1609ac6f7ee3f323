"""`eterna train`: fine-tune adapters (sft, dpo, raft) or distil a standalone student (distill)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from app.cli.common import add_flags, emit, format_names, load_config, main_rank, quiet_datasets
from retrieval.errors import EternaError


def _checkpoint_flags(sp) -> None:
    sp.add_argument("--save-steps", type=int, help="checkpoint every N optimizer steps into <out>.checkpoints/")
    sp.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint of an "
                                                          "interrupted run of the same data and recipe")
    sp.add_argument("--keep-checkpoints", action="store_true", help="keep <out>.checkpoints/ after publishing "
                                                                    "(default: removed)")


def _steps_flags(sp) -> None:
    sp.add_argument("--max-steps", type=int)
    sp.add_argument("--epochs", type=float)


def register(sub) -> None:
    train = sub.add_parser("train", help="fine-tune adapters").add_subparsers(dest="sub", required=True)
    sp = train.add_parser("sft", help="fine-tune one NPC's voice on its style set (LoRA by default)")
    sp.add_argument("--npc", required=True)
    sp.add_argument("--data", help="chat data: messages, alpaca or sharegpt rows, JSONL or a JSON array "
                                   "(default: paths.style/<npc>.jsonl)")
    sp.add_argument("--out", help="adapter folder (default: paths.adapters/<npc>)")
    _steps_flags(sp)
    sp.add_argument("--rank", type=int)
    sp.add_argument("--method", help="lora (default), dora, qlora, ia3, prompt, prefix, adapter (bottleneck), full")
    sp.add_argument("--params", help='the method\'s parameters as JSON, e.g. \'{"r": 16}\' or '
                                     '\'{"num_virtual_tokens": 20}\'')
    sp.add_argument("--lr", type=float)
    sp.add_argument("--max-length", type=int, help="tokens per example, system prompt included (default 384)")
    sp.add_argument("--overlong", choices=["drop", "truncate", "error"],
                    help="examples over --max-length: drop (default), truncate, or error")
    sp.add_argument("--format", help="force the data format (default: detected): " + format_names())
    sp.add_argument("--skip-bad-rows", action="store_true",
                    help="train on the rows that pass the data gate instead of refusing data with errors")
    sp.add_argument("--recipe", metavar="FILE", help="recipe YAML (configs/recipes/); the flags above override it")
    _checkpoint_flags(sp)
    add_flags(sp, npcs=True)
    sp.set_defaults(fn=cmd_train_sft)

    sp = train.add_parser("dpo", help="preference-tune one NPC's voice with DPO on its preference pairs")
    sp.add_argument("--npc", required=True)
    sp.add_argument("--data", help="JSONL {prompt, chosen, rejected} (default: paths.preferences/<npc>.jsonl)")
    sp.add_argument("--out", help="adapter folder (default: paths.adapters/<npc>-dpo)")
    start = sp.add_mutually_exclusive_group()
    start.add_argument("--from-adapter", metavar="DIR", help="continue this adapter; it is also the DPO reference "
                                                             "(default: paths.adapters/<npc> when it exists)")
    start.add_argument("--from-base", action="store_true", help="train a fresh adapter on the base model")
    sp.add_argument("--method", help="method of a fresh adapter: lora (default), dora, ia3, adapter, ...")
    _steps_flags(sp)
    sp.add_argument("--beta", type=float, help="DPO beta (default 0.1)")
    sp.add_argument("--lr", type=float)
    sp.add_argument("--held-out", type=float, help="share of pairs scored before and after, not trained on "
                                                   "(default 0.2)")
    _checkpoint_flags(sp)
    add_flags(sp, npcs=True)
    sp.set_defaults(fn=cmd_train_dpo)

    sp = train.add_parser("distill", help="distil one character (a book) into a small standalone student model")
    sp.add_argument("--npc", required=True)
    sp.add_argument("--out", help="checkpoint folder (default: paths.adapters/<npc>-student)")
    sp.add_argument("--layers", type=int, help="student decoder layers, spaced over the teacher's (default 3)")
    sp.add_argument("--intermediate", type=int, help="student feed-forward width (default: the widest within a "
                                                     "quarter of the teacher's parameters)")
    sp.add_argument("--init", choices=["teacher", "fresh"], help="copy the teacher's weights (default) or random")
    sp.add_argument("--temperature", type=float, help="softmax temperature of the KL loss (default 2)")
    sp.add_argument("--dialogues", type=int, help="training dialogues generated from the lore (default 128; at "
                                                  "most one per prompt the lore yields)")
    sp.add_argument("--max-new-tokens", type=int, help="tokens per teacher reply (default: generation.max_new_tokens)")
    sp.add_argument("--teacher-temperature", type=float, help="sample the teacher's replies (default 0: greedy)")
    sp.add_argument("--chapter", type=int, default=1, help="lore up to this chapter (default 1: the student may "
                                                           "repeat what it learns, later chapters would be spoilers)")
    _steps_flags(sp)
    sp.add_argument("--lr", type=float)
    add_flags(sp, npcs=True)
    sp.set_defaults(fn=cmd_train_distill)

    sp = train.add_parser("raft", help="grounded-answer adapter from the world's own index (RAFT)")
    sp.add_argument("--npc", help="one character's scope and voice")
    sp.add_argument("--all", action="store_true", help="the whole cast: one shared grounding adapter")
    sp.add_argument("--chapter", type=int, default=1, help="lore up to this chapter only (default 1: no spoilers)")
    sp.add_argument("--examples", type=int, default=300)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--out", help="adapter folder (default: paths.adapters/raft-<npc|all>)")
    _steps_flags(sp)
    add_flags(sp, npcs=True, index=True)
    sp.set_defaults(fn=cmd_train_raft)


def _given(*pairs) -> dict:
    """The recipe fields whose flags were given."""
    return {k: v for k, v in pairs if v is not None}


def _recipe(cls, overrides: dict):
    """The recipe, or the first invalid field as the flag it came from."""
    from pydantic import ValidationError

    try:
        return cls(**overrides)
    except ValidationError as e:
        first = e.errors()[0]
        raise EternaError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None


def cmd_train_sft(args) -> None:
    quiet_datasets()
    from app.config import Cast
    from app.prompt import system_prompt
    from tuning.base import prepare_model
    from tuning.sft import SFTRecipe, train_sft

    cfg = load_config(args)
    npc = Cast.load(cfg.paths.npcs, cfg.world).get(args.npc)
    data = Path(args.data) if args.data else cfg.data_path("style") / f"{npc.id}.jsonl"
    out = Path(args.out) if args.out else cfg.paths.adapters / npc.id
    overrides = _given(("max_steps", args.max_steps), ("epochs", args.epochs), ("method", args.method),
                       ("learning_rate", args.lr), ("max_length", args.max_length), ("overlong", args.overlong),
                       ("save_steps", args.save_steps))
    params = {}
    if args.params:
        try:
            params = json.loads(args.params)
        except json.JSONDecodeError as e:
            raise EternaError(f"--params: invalid JSON ({e.msg}); e.g. --params '{{\"r\": 16}}'") from None
        if not isinstance(params, dict):
            raise EternaError("--params must be a JSON object, e.g. '{\"num_virtual_tokens\": 16}'")
    if args.rank is not None:
        params["r"] = args.rank
    from pydantic import ValidationError

    from tuning.methods import get_method

    if args.recipe:  # the file's fields, then the flags given
        from tuning.recipes import load_recipe

        recipe = load_recipe(Path(args.recipe), SFTRecipe, {**overrides, **({"params": params} if params else {})})
    else:
        get_method(overrides.get("method", "lora")).parse(params)  # fail before loading anything
        try:
            recipe = SFTRecipe(**overrides, params=params)
        except ValidationError as e:
            first = e.errors()[0]
            raise EternaError(f"--{first['loc'][0]}: {first['msg']}") from None
    from app.validate import lore_linter
    from retrieval.corpus import load_corpus
    from tuning.gate import gate_file

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
    emit(args, {"adapter": str(out), **manifest},
         f"adapter for {npc.id} -> {out}: {m['steps']} steps, loss {m['first_loss']} -> {m['last_loss']}, "
         f"{m['seconds']} s. Set `adapter: {out}` for {npc.id} in your npcs file to use it.")


def cmd_train_dpo(args) -> None:
    """DPO on the NPC's preference pairs, continuing its SFT adapter when there is one."""
    quiet_datasets()
    from app.config import Cast
    from app.prompt import system_prompt
    from tuning.base import prepare_model
    from tuning.dpo import DPORecipe, train_dpo
    from tuning.methods import get_method

    cfg = load_config(args)
    npc = Cast.load(cfg.paths.npcs, cfg.world).get(args.npc)
    data = Path(args.data) if args.data else cfg.data_path("preferences") / f"{npc.id}.jsonl"
    out = Path(args.out) if args.out else cfg.paths.adapters / f"{npc.id}-dpo"
    if args.from_adapter:
        start = Path(args.from_adapter)
    elif args.from_base:
        start = None
    else:
        default = cfg.paths.adapters / npc.id
        start = default if default.is_dir() else None
    overrides = _given(("max_steps", args.max_steps), ("epochs", args.epochs), ("beta", args.beta),
                       ("learning_rate", args.lr), ("held_out", args.held_out), ("method", args.method),
                       ("save_steps", args.save_steps))
    if start is not None and args.method:
        raise EternaError(f"--method applies to a fresh adapter; {start} keeps its own method (add --from-base)")
    recipe = _recipe(DPORecipe, overrides)
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
    emit(args, {"adapter": str(out), **manifest},
         f"DPO adapter for {npc.id} ({origin}) -> {out}: {m['steps']} steps, loss {m['first_loss']} -> "
         f"{m['last_loss']}; {figures}; {m['seconds']} s. Set `adapter: {out}` for {npc.id} in your npcs file "
         "to use it.")


def cmd_train_distill(args) -> None:
    """A small standalone student of one character, distilled from the base model with its adapter and lore."""
    from app.config import Cast
    from app.distill import distill_npc
    from tuning.distill import DistillRecipe

    cfg = load_config(args)
    cast = Cast.load(cfg.paths.npcs, cfg.world)
    npc = cast.get(args.npc)
    out = Path(args.out) if args.out else cfg.paths.adapters / f"{npc.id}-student"
    recipe = _recipe(DistillRecipe, _given(
        ("layers", args.layers), ("intermediate", args.intermediate), ("init", args.init),
        ("temperature", args.temperature), ("dialogues", args.dialogues), ("max_steps", args.max_steps),
        ("epochs", args.epochs), ("max_new_tokens", args.max_new_tokens), ("learning_rate", args.lr),
        ("teacher_temperature", args.teacher_temperature)))
    manifest = distill_npc(cfg, cast, npc.id, out, recipe, chapter=args.chapter, log=True)
    m, st = manifest["metrics"], manifest["student"]
    agree, speed, voice = m["agreement"]["after"], m["speed"], m["voice_markers"]
    emit(args, {"model": str(out), **manifest},
         f"student of {npc.id} -> {out}: layers {st['layers']} of the teacher's, {st['parameters']:,} parameters "
         f"({st['params_ratio']:.0%} of the teacher), {st['size_mb']} MB; {m['steps']} steps, loss "
         f"{m['first_loss']} -> {m['last_loss']}; top-1 agreement {m['agreement']['before']['top1']} -> "
         f"{agree['top1']} (KL {agree['kl']}); {speed['student_tokens_per_s']} vs {speed['teacher_tokens_per_s']} "
         f"tokens/s ({speed['ratio']}x); voice markers teacher {voice['teacher']} student {voice['student']}; "
         f"{m['seconds']} s. Set `model: {out}` for {npc.id} in your npcs file to use it.")


def cmd_train_raft(args) -> None:
    """RAFT: grounded-answer examples from the world's own index, rendered with the engine's own fact prompt,
    then the SFT recipe trains an adapter on them (app/raft.py)."""
    from app.config import Cast
    from app.raft import train_raft

    if bool(args.npc) == bool(args.all):
        raise EternaError("train raft needs --npc ID or --all")
    cfg = load_config(args)
    cast = Cast.load(cfg.paths.npcs, cfg.world)
    npcs = [cast.get(args.npc)] if args.npc else cast.npcs
    out = Path(args.out) if args.out else cfg.paths.adapters / f"raft-{args.npc or 'all'}"
    manifest = train_raft(cfg, npcs, out, name=args.npc or "all", chapter=args.chapter, examples=args.examples,
                          seed=args.seed, overrides=_given(("max_steps", args.max_steps), ("epochs", args.epochs)),
                          log=main_rank())
    m = manifest["metrics"]
    emit(args, {"adapter": str(out), **manifest},
         f"grounding adapter -> {out}: {manifest['raft']['items']} examples, {m['steps']} steps, loss "
         f"{m['first_loss']} -> {m['last_loss']}, {m['seconds']} s. Set `grounding.adapter: {out}` in the config to "
         "use it.")
