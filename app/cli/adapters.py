"""`eterna adapters`: ship trained adapters, merge one into its base, export one for a serving engine (a PEFT
folder for vLLM/SGLang, a GGUF LoRA for llama.cpp's servers) with the server command line that loads it."""

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
    sp = ads.add_parser("export", help="export a character's adapter where a serving engine loads it: `peft` (vLLM, "
                                       "SGLang; rank and targets checked against vLLM's limits) or `gguf` (llama.cpp's "
                                       "servers); prints the server command line")
    sp.add_argument("--npc", required=True, help="the character whose adapter (the cast file's `adapter:`) to export")
    sp.add_argument("--format", required=True, choices=["peft", "gguf"])
    sp.add_argument("--out", required=True, metavar="DIR", help="written: DIR/<npc>/ (peft) or DIR/<npc>.gguf")
    sp.add_argument("--adapter", metavar="DIR", help="export this adapter folder instead of the cast file's")
    sp.add_argument("--base", metavar="DIR", help="gguf: the base checkpoint (default: the one the adapter's "
                                                  "manifest names)")
    add_flags(sp, npcs=True)
    sp.set_defaults(fn=cmd_adapters_export)

    sp = ads.add_parser("scale", help="copy a LoRA adapter with its strength multiplied (lora_alpha x FACTOR): "
                                      "a gentler voice on every backend, the weights untouched")
    sp.add_argument("--adapter", required=True, metavar="DIR")
    sp.add_argument("--factor", required=True, type=float, help="strength multiplier in (0, 4]; 0.5 halves the "
                                                                 "adapter's effect")
    sp.add_argument("--out", required=True, metavar="DIR", help="the scaled copy (a new folder)")
    add_flags(sp)
    sp.set_defaults(fn=cmd_adapters_scale)

    sp = ads.add_parser("export-gguf", help="write a LoRA adapter as a GGUF LoRA for llama.cpp (the older spelling "
                                            "of `export --format gguf`, by adapter folder and file)")
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


def cmd_adapters_scale(args) -> None:
    from tuning.adapters import scale_adapter

    m = scale_adapter(Path(args.adapter), Path(args.out), args.factor)["scaled"]
    emit(args, {"adapter": str(args.out), **m}, f"{args.adapter} x {args.factor} -> {args.out} (lora_alpha "
         f"{m['trained_lora_alpha']} -> {m['lora_alpha']}, {m['total_factor']:g} of the trained strength)")


def cmd_adapters_export_gguf(args) -> None:
    from tuning.merge import export_gguf

    path = export_gguf(Path(args.adapter), Path(args.out), base_dir=args.base and Path(args.base),
                       cache_dir=_cache_dir(args))
    emit(args, {"gguf": str(path), "bytes": path.stat().st_size},
         f"GGUF LoRA -> {path} ({path.stat().st_size} bytes); llama.cpp applies it with --lora {path}")


def serve_commands(fmt: str, npc: str, path: Path, *, hub_id: str | None, base_gguf: Path | None,
                   rank: int | None = None) -> list[str]:
    """The server command lines that load an exported adapter as `npc` (and the models.remote it pairs with)."""
    if fmt == "peft":
        from tuning.export import vllm_max_lora_rank

        base = hub_id or "<the base model's hub id>"
        return [f"vllm serve {base} --enable-lora --max-lora-rank {vllm_max_lora_rank(rank or 8)} "
                f"--lora-modules {npc}={path}",
                f"python -m sglang.launch_server --model-path {base} --lora-paths {npc}={path}",
                f"models.remote: {{base_url: http://HOST:8000/v1, model: {base}, adapters: {{{npc}: {npc}}}}}"]
    gguf = base_gguf or "<the base model's GGUF>"
    return [f"llama-server -m {gguf} --lora {path} --lora-init-without-apply   "
            f"# models.remote: {{lora_mode: lora_field, adapters: {{{npc}: 0}}}} (0: its place among --lora)",
            f"python -m llama_cpp.server --model {gguf} --lora_path {path} --model_alias {npc} "
            f"--interrupt_requests False   "
            f"# one process per adapter; models.remote: {{adapters: {{{npc}: {npc}}}}}"]


def cmd_adapters_export(args) -> None:
    """`eterna adapters export --npc ID --format peft|gguf --out DIR`."""
    import json

    from app.config import Cast
    from tuning.adapters import read_adapter_manifest, ship_adapter
    from tuning.base import HUB_IDS, model_gguf
    from tuning.export import vllm_lora_problem

    cfg = load_config(args)
    if args.adapter:
        src = Path(args.adapter).resolve()
    else:
        npc = Cast.load(cfg.paths.npcs, cfg.world).get(args.npc)
        if npc.adapter is None:
            raise EternaError(f"{cfg.paths.npcs}: {args.npc} has no `adapter:` entry; pass --adapter DIR")
        src = npc.adapter
    base = read_adapter_manifest(src).get("base", {})
    hub_id = base.get("hub_id") or HUB_IDS.get(base.get("spec", ""))
    spec = base.get("spec") or cfg.models.llm
    base_gguf = model_gguf(spec, cfg.models.llamacpp.gguf if spec == cfg.models.llm else None)
    out_dir = Path(args.out).resolve()
    if args.format == "peft":
        problem = vllm_lora_problem(src)
        if problem:
            raise EternaError(f"{src}: not exported for vLLM: {problem}")
        path = out_dir / args.npc
        ship_adapter(src, path, by="eterna adapters export --format peft")
        rank = json.loads((path / "adapter_config.json").read_text(encoding="utf-8")).get("r")
    else:
        from tuning.merge import export_gguf

        path = export_gguf(src, out_dir / f"{args.npc}.gguf", base_dir=args.base and Path(args.base),
                           cache_dir=cfg.models.cache_dir)
        rank = None
    commands = serve_commands(args.format, args.npc, path, hub_id=hub_id, base_gguf=base_gguf, rank=rank)
    emit(args, {"npc": args.npc, "format": args.format, "path": str(path), "base": hub_id, "commands": commands},
         f"{args.npc}: {args.format} adapter -> {path}\nserve it with:\n" + "\n".join(f"  {c}" for c in commands))
