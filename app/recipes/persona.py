"""`eterna train persona`: one persona-following adapter for every character without its own (tuning/persona.py):
worlds' style sets with their cast's system prompts, PersonaChat exchanges and style cards (app/data/
persona_cards.yaml), through the SFT recipe. Serve it with `models.persona_adapter: FOLDER`."""

from __future__ import annotations

from pathlib import Path

from app.recipes import checkpoint_options, register
from tuning.persona import PersonaRecipe

CARDS = Path(__file__).resolve().parents[1] / "data" / "persona_cards.yaml"


def options(sp) -> None:
    sp.add_argument("--worlds", nargs="*", metavar="CONFIG",
                    help="world configs whose cast's style sets train, each row with its character's system prompt "
                         "(default: --config's world; none: `--worlds` alone)")
    sp.add_argument("--dialogues", help="PersonaChat in ParlAI's text form (*_self_original_no_cands.txt); the style "
                                        "cards speak some of its replies")
    sp.add_argument("--out", help="adapter folder (default: paths.adapters/persona)")
    sp.add_argument("--data-out", help="the built training rows, JSONL (default: models.cache_dir/persona/"
                                       "<out folder name>.jsonl)")
    checkpoint_options(sp)


def styled_rows(config_paths: list[Path]) -> list[tuple[str, list[dict]]]:
    """(system prompt, chat example) of every character with a style set, in each world config given: the system
    prompt of a small-talk turn, as the engine builds it (persona, style text, the `style` route's instructions)."""
    from app.config import Cast, EternaConfig
    from app.prompt import prompt_head
    from tuning.data import load_chat_examples

    out = []
    for path in config_paths:
        cfg = EternaConfig.load(Path(path))
        if cfg.paths.style is None:
            continue
        for npc in Cast.load(cfg.paths.npcs, cfg.world).npcs:
            data = cfg.paths.style / f"{npc.id}.jsonl"
            if data.is_file():
                system = prompt_head(npc, "style", cfg.world, cfg.prompts)
                out += [(system, ex) for ex in load_chat_examples(data)]
    return out


def speaker_prompt(prompts):
    """`system_of(name, persona, style)`: the engine's small-talk system prompt for an invented speaker in a
    neutral world."""
    from app.config import NpcSpec, WorldConfig
    from app.prompt import prompt_head

    def system_of(name: str, persona: str, style: str) -> str:
        spec = NpcSpec(id="speaker", name=name, role="npc", persona=persona or name, style=style, knows="all")
        return prompt_head(spec, "style", WorldConfig(), prompts)
    return system_of


def train(cfg, args, recipe: PersonaRecipe) -> tuple[dict, str]:
    import yaml

    from app.cli.common import main_rank, quiet_datasets
    from tuning.base import prepare_model
    from tuning.persona import persona_rows, read_personachat, write_rows
    from tuning.sft import train_sft

    quiet_datasets()
    worlds = [Path(args.config)] if args.worlds is None else [Path(w) for w in args.worlds]
    out = Path(args.out) if args.out else cfg.paths.adapters / "persona"
    data = Path(args.data_out) if args.data_out else cfg.models.cache_dir / "persona" / f"{out.name}.jsonl"
    dialogues = read_personachat(Path(args.dialogues)) if args.dialogues else []
    cards = yaml.safe_load(CARDS.read_text(encoding="utf-8"))
    rows, counts = persona_rows(styled_rows(worlds), dialogues, cards, recipe, speaker_prompt(cfg.prompts))
    write_rows(rows, data)
    base = prepare_model(cfg.models.llm, cfg.models.cache_dir)
    sources = {"worlds": [w.name for w in worlds], "dialogues": Path(args.dialogues).name if args.dialogues else None,
               "rows": counts}
    manifest = train_sft(base, data, out, recipe, system=None, npc=None, base_spec=cfg.models.llm, log=main_rank(),
                         built_by="eterna train persona", extra={"persona": sources}, resume=args.resume,
                         keep_checkpoints=args.keep_checkpoints)
    m = manifest["metrics"]
    return ({"adapter": str(out), **manifest},
            f"persona adapter -> {out}: {sum(counts.values())} rows ({counts}), {m['steps']} steps, loss "
            f"{m['first_loss']} -> {m['last_loss']}, {m['seconds']} s. Set `models.persona_adapter: {out}` in the "
            "config to serve it for every character without an adapter of its own.")


register("persona", PersonaRecipe, train, "one persona-following adapter for every character without its own",
         options=options, flags={"learning_rate": ("--lr", "--learning-rate")})
