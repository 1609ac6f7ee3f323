"""`eterna adapters`: ship trained adapters, merge one into its base, export one as a GGUF LoRA."""

from __future__ import annotations

from pathlib import Path

from app.cli.common import add_flags, emit, load_config
from retrieval.errors import EternaError


def register(sub) -> None:
    ads = sub.add_parser("adapters", help="ship, merge or export trained adapters").add_subparsers(
        dest="sub", required=True)
    sp = ads.add_parser("ship", help="halve trained adapters to float16 and copy them where the cast file's "
                                     "`adapter:` entries point (refuses adapters whose data or prompt changed)")
    sp.add_argument("--npc", action="append", help="this NPC only (repeatable; default: every NPC with an adapter)")
    sp.add_argument("--from", dest="source", help="folder of trained adapters, <npc>/ each (default: paths.adapters)")
    sp.add_argument("--to", help="ship into DIR/<npc> instead of the cast file's `adapter:` paths")
    add_flags(sp, npcs=True)
    sp.set_defaults(fn=cmd_adapters_ship)

    sp = ads.add_parser("merge", help="fold a LoRA/DoRA/IA3 adapter into its base: a full checkpoint that "
                                      "serves as models.llm with no adapter overhead")
    sp.add_argument("--adapter", required=True, metavar="DIR")
    sp.add_argument("--out", required=True, metavar="DIR", help="the merged checkpoint folder")
    sp.add_argument("--base", metavar="DIR", help="the base checkpoint (default: the one the adapter's manifest "
                                                  "names)")
    sp.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    sp.add_argument("--allow-qlora", action="store_true", help="merge a QLoRA adapter into the full-precision base")
    add_flags(sp)
    sp.set_defaults(fn=cmd_adapters_merge)
    sp = ads.add_parser("export-gguf", help="write a LoRA adapter as a GGUF LoRA for llama.cpp")
    sp.add_argument("--adapter", required=True, metavar="DIR")
    sp.add_argument("--out", required=True, metavar="FILE", help="the .gguf file to write")
    sp.add_argument("--base", metavar="DIR", help="the base checkpoint (default: the one the adapter's manifest "
                                                  "names)")
    add_flags(sp)
    sp.set_defaults(fn=cmd_adapters_export_gguf)


def cmd_adapters_ship(args) -> None:
    """Halve trained adapters to float16 and copy them where the cast file's `adapter:` entries point, after
    checking each still matches its training data and the system prompt the config builds now."""
    from app.config import Cast
    from app.prompt import system_prompt
    from tuning.adapters import manifest_problems, read_adapter_manifest, ship_adapter

    cfg = load_config(args)
    cast = Cast.load(cfg.paths.npcs, cfg.world)
    npcs = [cast.get(n) for n in args.npc] if args.npc else [n for n in cast.npcs if n.adapter is not None]
    if not npcs:
        raise EternaError(f"{cfg.paths.npcs}: no NPC has an `adapter:` entry; name the shipped folder of each "
                          "(or pass --npc ID --to DIR)")
    source = Path(args.source).resolve() if args.source else cfg.paths.adapters
    shipped = []
    for npc in npcs:
        src = source / npc.id
        dst = Path(args.to).resolve() / npc.id if args.to else npc.adapter
        if dst is None:
            raise EternaError(f"{cfg.paths.npcs}: {npc.id} has no `adapter:` entry to ship to; add one or pass --to")
        if src.resolve() == dst.resolve():
            raise EternaError(f"{src}: the source and the shipped copy are the same folder; pass --from DIR")
        problems = manifest_problems(read_adapter_manifest(src), src, npc=npc.id,
                                     data=cfg.data_path("style") / f"{npc.id}.jsonl",
                                     system=system_prompt(npc, cfg.world, cfg.prompts))
        if problems:
            raise EternaError(f"not shipped: {problems[0]}")
        m = ship_adapter(src, dst)["shipped"]
        shipped.append({"npc": npc.id, "from": str(src), "to": str(dst), "bytes": m["bytes"],
                        "trained_bytes": m["trained_bytes"]})
    emit(args, {"shipped": shipped}, "\n".join(
        f"{s['npc']}: {s['from']} -> {s['to']} ({s['trained_bytes'] / 1e6:.1f} MB -> {s['bytes'] / 1e6:.1f} MB, "
        "float16)" for s in shipped))


def _cache_dir(args) -> Path:
    """The config's model cache, where an adapter's named base is prepared (the default when no config is here)."""
    try:
        return load_config(args).models.cache_dir
    except EternaError:
        return Path(".eterna/models")


def cmd_adapters_merge(args) -> None:
    from tuning.merge import merge_adapter

    m = merge_adapter(Path(args.adapter), Path(args.out), base_dir=args.base and Path(args.base),
                      allow_qlora=args.allow_qlora, dtype=args.dtype, log=True, cache_dir=_cache_dir(args))
    emit(args, {"model": str(args.out), **m}, f"merged {args.adapter} into its base -> {args.out} "
         f"({m['parameters']} parameters, {m['dtype']}). Set `models.llm: {args.out}` to serve it.")


def cmd_adapters_export_gguf(args) -> None:
    from tuning.merge import export_gguf

    path = export_gguf(Path(args.adapter), Path(args.out), base_dir=args.base and Path(args.base),
                       cache_dir=_cache_dir(args))
    emit(args, {"gguf": str(path), "bytes": path.stat().st_size},
         f"GGUF LoRA -> {path} ({path.stat().st_size} bytes); llama.cpp applies it with --lora {path}")
