"""The `eterna` command line. Thin: parse flags, build typed configs, call the framework, print text or JSON.

Exit codes: 0 success, 2 bad input or config (a one-line `error: ...` on stderr), 3 a batch ran but some lines
failed (each has its own error object) or `validate` found errors in training data (the report lists them),
1 unexpected failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from retrieval.errors import EternaError

DEFAULT_CONFIG = Path("configs/eterna.yaml")


def _quiet_libraries() -> None:
    """Third-party chatter (progress bars, optional-kernel notices) would pollute --json stdout."""
    import logging
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the CLI never reaches a hub
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    warnings.filterwarnings("ignore")
    for name in ("transformers", "sentence_transformers", "bitsandbytes", "huggingface_hub", "datasets", "peft",
                 "trl", "accelerate", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # transformers reads these when it is imported: a command that never imports it (`index list`) does not pay
    # 1.3 s to quiet it; in a process where it is already loaded (tests calling main()) it is quieted directly
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def _config(args):
    from app.config import EternaConfig

    path = Path(args.config)
    if not path.is_file():
        raise EternaError(f"config {path} not found; run from the project folder or pass --config FILE")
    cfg = EternaConfig.load(path)
    paths = cfg.paths.model_copy(update={k: Path(v).resolve() for k, v in (
        ("corpus", getattr(args, "corpus", None)), ("index", getattr(args, "index", None)),
        ("npcs", getattr(args, "npcs", None))) if v is not None})
    models = cfg.models
    if getattr(args, "backend", None):
        models = models.model_copy(update={"backend": args.backend})
    return cfg.model_copy(update={"paths": paths, "models": models})


def _quiet_datasets() -> None:
    """The trainers tokenize with datasets' map, whose progress bars would fill stderr (training commands only:
    importing datasets costs every other command a second)."""
    import datasets

    datasets.disable_progress_bars()


def _main_rank() -> bool:
    """False in the other processes of an `accelerate launch`/torchrun job: only the main one reports."""
    return int(os.environ.get("RANK", "0")) == 0


def _emit(args, obj: dict, text: str) -> None:
    if not _main_rank():
        return
    print(json.dumps(obj, ensure_ascii=False) if getattr(args, "json", False) else text, flush=True)


# --- commands ---------------------------------------------------------------------------------------------

def cmd_models_prepare(args) -> None:
    from retrieval.embeddings import SentenceTransformerEmbedder
    from tuning.base import prepare_model

    cfg = _config(args)
    t0 = time.perf_counter()
    llm = prepare_model(cfg.models.llm, cfg.models.cache_dir)
    t1 = time.perf_counter()
    emb = SentenceTransformerEmbedder(cfg.models.embedder, dtype=cfg.models.embedder_dtype)
    out = {"llm": str(llm), "llm_seconds": round(t1 - t0, 2), "embedder": emb.id, "embedder_dim": emb.dim,
           "embedder_seconds": round(time.perf_counter() - t1, 2)}
    _emit(args, out, f"llm ready at {llm} ({out['llm_seconds']} s); embedder {emb.id} dim {emb.dim}")


def cmd_index_rebuild(args) -> None:
    from app.config import Cast
    from retrieval.corpus import load_corpus
    from retrieval.embeddings import SentenceTransformerEmbedder
    from retrieval.rebuild import rebuild_index

    cfg = _config(args)
    npc_ids = {n.id for n in Cast.load(cfg.paths.npcs, cfg.world).npcs}
    load_corpus(cfg.paths.corpus, cfg.world.kinds, npc_ids)  # fail on bad lore before loading the embedder
    emb = SentenceTransformerEmbedder(cfg.models.embedder, dtype=cfg.models.embedder_dtype)
    stats = rebuild_index(cfg.paths.corpus, cfg.paths.index, emb, chunk_words=cfg.retrieval.chunk_words,
                          overlap_words=cfg.retrieval.overlap_words, force=args.force, kinds=cfg.world.kinds,
                          npc_ids=npc_ids, index_spec=cfg.retrieval.index.spec())
    out = {**{k: v for k, v in stats.__dict__.items() if k != "extra"}, **stats.extra}
    if stats.extra.get("unchanged"):
        text = f"index unchanged: generation {stats.generation} is current ({stats.chunks} chunks); --force rebuilds"
    else:
        text = (f"index generation {stats.generation}: {stats.documents} documents, {stats.chunks} chunks "
                f"({stats.embedded} embedded, {stats.reused} reused) in {stats.seconds} s -> {stats.path}")
    _emit(args, out, text)


def cmd_index_list(args) -> None:
    from retrieval.rebuild import list_generations

    gens = list_generations(_config(args).paths.index)
    lines = [f"{'*' if g['live'] else ' '} {g['generation']}  {g['documents']} docs  {g['chunks']} chunks  "
             f"{g['embedder']}" for g in gens] or ["no generations"]
    _emit(args, {"generations": gens}, "\n".join(lines))


def cmd_index_rollback(args) -> None:
    from retrieval.rebuild import use_generation

    name = use_generation(_config(args).paths.index, args.generation)
    _emit(args, {"live": name}, f"generation {name} is live")


def cmd_index_search(args) -> None:
    from app.config import Cast
    from retrieval.embeddings import SentenceTransformerEmbedder
    from retrieval.index import LoreIndex
    from retrieval.types import Scope

    cfg = _config(args)
    if args.k < 1:
        raise EternaError("--k must be at least 1")
    if args.chapter is not None and args.chapter < 1:
        raise EternaError("--chapter must be a positive integer")
    query = args.query.strip()
    if not query:
        raise EternaError("the query is empty")
    scope = Scope(chapter=args.chapter)
    if args.npc:
        npc = Cast.load(cfg.paths.npcs, cfg.world).get(args.npc)
        scope = Scope(npc=npc.id, kinds=npc.kinds(), chapter=args.chapter)
    emb = SentenceTransformerEmbedder(cfg.models.embedder, dtype=cfg.models.embedder_dtype)
    index = LoreIndex.open(cfg.paths.index, emb)
    retrieval = cfg.retrieval.model_copy(update={"mode": args.mode}) if args.mode else cfg.retrieval
    hits = retrieval.retriever(emb).search(index, query, emb.encode([query])[0], args.k, scope)
    out = {"query": query, "generation": index.path.name, "mode": retrieval.mode,
           "hits": [{**h.source(), "rank": h.rank, "title": h.chunk.title, "chapter": h.chunk.chapter,
                     "text": h.chunk.text} for h in hits]}
    lines = [f"{h.rank + 1}. {h.score:.3f}  {h.chunk.id}  (ch {h.chunk.chapter})  {h.chunk.text[:100]}..."
             for h in hits] or ["no hits"]
    _emit(args, out, "\n".join(lines))


def _engine(args, cfg=None):
    from app.dialogue import DialogueEngine

    return DialogueEngine.from_settings(cfg or _config(args), adapters=not getattr(args, "no_adapters", False))


def cmd_say(args) -> int:
    if args.file is None and (args.text is None or args.npc is None):
        raise EternaError("say needs TEXT and --npc ID, or --file LINES.jsonl")
    if args.file is not None:
        return _say_batch(args)
    from app.config import Cast
    from app.demo import voice_label
    from app.dialogue import check_turn

    cfg = _config(args)  # fail fast on bad input, before any model is loaded
    check_turn(Cast.load(cfg.paths.npcs, cfg.world), cfg.guard.max_input_chars, args.npc, args.text, args.chapter,
               args.session)
    engine = _engine(args, cfg)
    reply = engine.say(args.npc, args.text, session=args.session, chapter=args.chapter)
    out = reply.to_json()
    srcs = ", ".join(s["chunk"] for s in reply.sources) or "none"
    _emit(args, out, f"{reply.npc} [{reply.route}] [{voice_label(reply)}]: {reply.text}\n  sources: {srcs}\n"
                     f"  why: {reply.reason}")
    return 0


def _say_batch(args) -> int:
    """One reply (or {"error": ...}) per input line; a bad line never stops the batch."""
    from app.demo import voice_label

    path = Path(args.file)
    if not path.is_file():
        raise EternaError(f"{path}: file not found")
    engine = _engine(args)
    failures = 0
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                try:
                    req = json.loads(line)
                except json.JSONDecodeError as e:
                    raise EternaError(f"invalid JSON ({e.msg} at column {e.colno})") from None
                if not isinstance(req, dict) or "npc" not in req or "text" not in req:
                    raise EternaError("each line needs at least 'npc' and 'text'")
                unknown = set(req) - {"npc", "text", "chapter", "session"}
                if unknown:
                    raise EternaError(f"unknown field {sorted(unknown)[0]!r}; allowed: npc, text, chapter, session")
                reply = engine.say(req["npc"], req["text"], session=req.get("session", args.session),
                                   chapter=req.get("chapter", args.chapter))
                out = {"line": lineno, **reply.to_json()}
                text = f"{reply.npc} [{reply.route}] [{voice_label(reply)}]: {reply.text}"
            except EternaError as e:
                failures += 1
                out = {"line": lineno, "error": f"{path}:{lineno}: {e}"}
                text = f"error: {path}:{lineno}: {e}"
            except Exception as e:  # a bug must not cost the rest of the batch its replies; report it per line
                failures += 1
                out = {"line": lineno, "error": f"{path}:{lineno}: internal error {type(e).__name__}: {e}",
                       "type": type(e).__name__}
                text = f"error: {out['error']}"
            _emit(args, out, text)
    if failures:
        print(f"{failures} line(s) of {path} failed; see their error objects", file=sys.stderr)
        return 3
    return 0


def cmd_chat(args) -> int:
    from app.demo import voice_label

    engine = _engine(args)
    npc = engine.cast.get(args.npc)
    print(f"Talking to {npc.name} (chapter {args.chapter}). Empty line or Ctrl-D to leave.", flush=True)
    while True:
        try:
            line = input("you> ")
        except EOFError:
            break
        if not line.strip():
            break
        from app.dialogue import Reply

        print(f"{npc.name}> ", end="", flush=True)
        shown = ""
        try:
            for item in engine.stream(npc.id, line, session=args.session, chapter=args.chapter):
                if isinstance(item, Reply):
                    reply = item
                else:
                    shown += item
                    print(item, end="", flush=True)
        except EternaError as e:
            print(f"\nerror: {e}", file=sys.stderr)
            continue
        if reply.text.strip() != shown.strip():  # the final text is authoritative
            print(f"\r{npc.name}> {reply.text}", end="")
        srcs = ", ".join(s["chunk"] for s in reply.sources)
        print(f"\n  [{reply.route}{': ' + srcs if srcs else ''}] [{voice_label(reply)}]", flush=True)
    return 0


def cmd_serve(args) -> int:
    import uvicorn

    from app.server import create_app, limit_malloc_arenas

    limit_malloc_arenas()  # before the engine's threads start

    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        print(f"warning: serving on {args.host} without --api-key: anyone who reaches this port can talk to "
              "your characters", file=sys.stderr)
    if args.workers > 1:
        # each worker process loads its own engine; session memory is shared safely through the sessions folder
        import os

        os.environ["ETERNA_SERVE"] = json.dumps({"config": str(Path(args.config).resolve()), "api_key": args.api_key,
                                                 "queue": args.queue, "backend": args.backend,
                                                 "npcs": args.npcs and str(Path(args.npcs).resolve()),
                                                 "index": args.index and str(Path(args.index).resolve())})
        uvicorn.run("app.server:app_from_env", factory=True, host=args.host, port=args.port, workers=args.workers,
                    log_level="warning")
        return 0
    engine = _engine(args)
    print(f"eterna serve: {len(engine.cast.npcs)} NPCs, backend {engine.generator.name}, "
          f"http://{args.host}:{args.port}/docs", file=sys.stderr, flush=True)
    uvicorn.run(create_app(engine, api_key=args.api_key, queue=args.queue), host=args.host, port=args.port,
                log_level="warning")
    return 0


def cmd_demo(args) -> int:
    from app.demo import run_demo

    cfg = _config(args)
    scene = Path(args.scene) if args.scene else cfg.data_path("scenes") / "demo.jsonl"
    return run_demo(cfg, scene, as_json=args.json, adapters=not args.no_adapters)


def cmd_adapters_ship(args) -> None:
    """Halve trained adapters to float16 and copy them where the cast file's `adapter:` entries point, after
    checking each still matches its training data and the system prompt the config builds now."""
    from app.config import Cast
    from app.prompt import system_prompt
    from tuning.adapters import manifest_problems, read_adapter_manifest, ship_adapter

    cfg = _config(args)
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
    _emit(args, {"shipped": shipped}, "\n".join(
        f"{s['npc']}: {s['from']} -> {s['to']} ({s['trained_bytes'] / 1e6:.1f} MB -> {s['bytes'] / 1e6:.1f} MB, "
        "float16)" for s in shipped))


def cmd_train_sft(args) -> None:
    _quiet_datasets()
    from app.config import Cast
    from app.prompt import system_prompt
    from tuning.base import prepare_model
    from tuning.sft import SFTRecipe, train_sft

    cfg = _config(args)
    npc = Cast.load(cfg.paths.npcs, cfg.world).get(args.npc)
    data = Path(args.data) if args.data else cfg.data_path("style") / f"{npc.id}.jsonl"
    out = Path(args.out) if args.out else cfg.paths.adapters / npc.id
    overrides = {k: v for k, v in (("max_steps", args.max_steps), ("epochs", args.epochs),
                                   ("method", args.method), ("learning_rate", args.lr),
                                   ("max_length", args.max_length), ("overlong", args.overlong),
                                   ("save_steps", args.save_steps)) if v is not None}
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
    if not gate.ok and not (args.skip_bad_rows and gate.items) and _main_rank():
        print(gate.render(limit=10), file=sys.stderr)
        gate.check(args.skip_bad_rows)
    facts = lore_linter(load_corpus(cfg.paths.corpus), [system]) if cfg.paths.corpus.is_dir() else None
    base = prepare_model(cfg.models.llm, cfg.models.cache_dir)
    manifest = train_sft(base, data, out, recipe, system=system, npc=npc.id, base_spec=cfg.models.llm, log=_main_rank(),
                         skip_bad_rows=args.skip_bad_rows, facts=facts, data_format=args.format, resume=args.resume,
                         keep_checkpoints=args.keep_checkpoints)
    m = manifest["metrics"]
    _emit(args, {"adapter": str(out), **manifest},
          f"adapter for {npc.id} -> {out}: {m['steps']} steps, loss {m['first_loss']} -> {m['last_loss']}, "
          f"{m['seconds']} s. Set `adapter: {out}` for {npc.id} in your npcs file to use it.")


def cmd_train_dpo(args) -> None:
    """DPO on the NPC's preference pairs, continuing its SFT adapter when there is one."""
    _quiet_datasets()
    from pydantic import ValidationError

    from app.config import Cast
    from app.prompt import system_prompt
    from tuning.base import prepare_model
    from tuning.dpo import DPORecipe, train_dpo
    from tuning.methods import get_method

    cfg = _config(args)
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
    overrides = {k: v for k, v in (("max_steps", args.max_steps), ("epochs", args.epochs), ("beta", args.beta),
                                   ("learning_rate", args.lr), ("held_out", args.held_out),
                                   ("method", args.method), ("save_steps", args.save_steps)) if v is not None}
    if start is not None and args.method:
        raise EternaError(f"--method applies to a fresh adapter; {start} keeps its own method (add --from-base)")
    try:
        recipe = DPORecipe(**overrides)
    except ValidationError as e:
        first = e.errors()[0]
        raise EternaError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None
    if start is None:
        get_method(recipe.method)  # fail before loading anything
    base = prepare_model(cfg.models.llm, cfg.models.cache_dir)
    manifest = train_dpo(base, data, out, recipe, start=start, system=system_prompt(npc, cfg.world, cfg.prompts),
                         npc=npc.id, base_spec=cfg.models.llm, log=_main_rank(), resume=args.resume,
                         keep_checkpoints=args.keep_checkpoints)
    m = manifest["metrics"]
    held = m["held_out"]
    figures = (f"held-out ({m['held_out_pairs']} pairs) reward margin {held['before']['reward_margin']:.3f} -> "
               f"{held['after']['reward_margin']:.3f}, accuracy {held['before']['reward_accuracy']:.2f} -> "
               f"{held['after']['reward_accuracy']:.2f}" if held else "no held-out pairs")
    origin = f"from {start}" if start else "from the base"
    _emit(args, {"adapter": str(out), **manifest},
          f"DPO adapter for {npc.id} ({origin}) -> {out}: {m['steps']} steps, loss {m['first_loss']} -> "
          f"{m['last_loss']}; {figures}; {m['seconds']} s. Set `adapter: {out}` for {npc.id} in your npcs file "
          "to use it.")


def cmd_train_distill(args) -> None:
    """A small standalone student of one character, distilled from the base model with its adapter and lore."""
    from pydantic import ValidationError

    from app.config import Cast
    from app.distill import distill_npc
    from tuning.distill import DistillRecipe

    cfg = _config(args)
    cast = Cast.load(cfg.paths.npcs, cfg.world)
    npc = cast.get(args.npc)
    out = Path(args.out) if args.out else cfg.paths.adapters / f"{npc.id}-student"
    overrides = {k: v for k, v in (("layers", args.layers), ("intermediate", args.intermediate), ("init", args.init),
                                   ("temperature", args.temperature), ("dialogues", args.dialogues),
                                   ("max_steps", args.max_steps), ("epochs", args.epochs),
                                   ("max_new_tokens", args.max_new_tokens), ("learning_rate", args.lr),
                                   ("teacher_temperature", args.teacher_temperature))
                 if v is not None}
    try:
        recipe = DistillRecipe(**overrides)
    except ValidationError as e:
        first = e.errors()[0]
        raise EternaError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None
    manifest = distill_npc(cfg, cast, npc.id, out, recipe, chapter=args.chapter, log=True)
    m, st = manifest["metrics"], manifest["student"]
    agree, speed, voice = m["agreement"]["after"], m["speed"], m["voice_markers"]
    _emit(args, {"model": str(out), **manifest},
          f"student of {npc.id} -> {out}: layers {st['layers']} of the teacher's, {st['parameters']:,} parameters "
          f"({st['params_ratio']:.0%} of the teacher), {st['size_mb']} MB; {m['steps']} steps, loss "
          f"{m['first_loss']} -> {m['last_loss']}; top-1 agreement {m['agreement']['before']['top1']} -> "
          f"{agree['top1']} (KL {agree['kl']}); {speed['student_tokens_per_s']} vs {speed['teacher_tokens_per_s']} "
          f"tokens/s ({speed['ratio']}x); voice markers teacher {voice['teacher']} student {voice['student']}; "
          f"{m['seconds']} s. Set `model: {out}` for {npc.id} in your npcs file to use it.")


def cmd_train_raft(args) -> None:
    """RAFT: grounded-answer examples from the world's own index, rendered with the engine's own fact prompt,
    then the SFT recipe trains an adapter on them."""
    from app.config import Cast
    from app.grounding import Evidence, wrap_in_voice
    from app.prompt import build_messages
    from retrieval.fileio import atomic_write_text
    from retrieval.index import LoreIndex
    from retrieval.types import Scope
    from tuning.base import prepare_model
    from tuning.raft import build_raft_items
    from tuning.sft import SFTRecipe, train_sft

    if bool(args.npc) == bool(args.all):
        raise EternaError("train raft needs --npc ID or --all")
    cfg = _config(args)
    cast = Cast.load(cfg.paths.npcs, cfg.world)
    npcs = [cast.get(args.npc)] if args.npc else cast.npcs
    index = LoreIndex.open(cfg.paths.index)
    chunks = [c for c in index.chunks if any(Scope(npc=n.id, kinds=n.kinds(), chapter=args.chapter).allows(c)
                                             for n in npcs)]
    items = build_raft_items(chunks, n=args.examples, seed=args.seed)
    rows = []
    for i, it in enumerate(items):
        npc = npcs[i % len(npcs)]
        evidence = [Evidence(s, c.id, c.doc, c.title, 1.0) for c, s in it.evidence]
        messages, _ = build_messages(npc, "fact", evidence, [], it.question, lambda m: 0, 1,
                                     world=cfg.world, prompts=cfg.prompts)
        m = npc.markers
        answer = it.answer if it.answer is not None else (npc.idk or cfg.world.idk)
        answer = wrap_in_voice(answer, m.opens if m else None, m.closes if m else None)
        rows.append(json.dumps({"messages": messages + [{"role": "assistant", "content": answer}]},
                               ensure_ascii=False))
    out = Path(args.out) if args.out else cfg.paths.adapters / f"raft-{args.npc or 'all'}"
    overrides = {k: v for k, v in (("max_steps", args.max_steps), ("epochs", args.epochs)) if v is not None}
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "raft.jsonl"
        atomic_write_text(data, "\n".join(rows) + "\n")
        recipe = SFTRecipe(**{"epochs": 1.0, "max_length": 512, **overrides})
        base = prepare_model(cfg.models.llm, cfg.models.cache_dir)
        manifest = train_sft(base, data, out, recipe, base_spec=cfg.models.llm, npc=args.npc or "all", log=_main_rank(),
                             built_by="eterna train raft",
                             extra={"raft": {"items": len(items), "idk": sum(it.answer is None for it in items),
                                             "chapter": args.chapter, "index": index.path.name,
                                             "npcs": [n.id for n in npcs]}})
    m = manifest["metrics"]
    _emit(args, {"adapter": str(out), **manifest},
          f"grounding adapter -> {out}: {len(items)} examples, {m['steps']} steps, loss {m['first_loss']} -> "
          f"{m['last_loss']}, {m['seconds']} s. Set `grounding.adapter: {out}` in the config to use it.")


def _eval_config(args):
    """Evaluation never writes player sessions: memory stays in the process."""
    cfg = _config(args)
    return cfg.model_copy(update={"paths": cfg.paths.model_copy(update={"sessions": None})})


def _progress(label: str):
    def show(i: int, n: int) -> None:
        if sys.stderr.isatty() or i == n or i % 10 == 0:
            print(f"\r{label}: {i}/{n}", end="\n" if i == n else "", file=sys.stderr, flush=True)
    return show


def cmd_eval_facts(args) -> None:
    from app.evaluation.facts import facts_report, load_fact_items

    items = load_fact_items(Path(args.file))  # fail on a bad file before loading models
    if args.limit:
        items = items[: args.limit]
    engine = _engine(args, _eval_config(args))
    report = facts_report(engine, items, keep_items=args.items, progress=_progress("facts"))
    text = (f"contains gold {report['contains_gold']} ({report['n_in_scope']} in scope), gold in sources "
            f"{report['gold_in_sources']}, spoiler leaks {report['spoiler_leaks']}, idk correct "
            f"{report['idk_correct']} ({report['n_out_of_scope']} out of scope), p50 {report['p50_ms']} ms; "
            f"words p50 {report.get('words_p50')} p90 {report.get('words_p90')}, answer first "
            f"{report.get('answer_first')}, clean {report.get('clean')}, repeats {report.get('repeat_rate')}")
    _emit(args, report, text)


def cmd_eval_quality(args) -> None:
    """Small talk scored as a player meets it (app/evaluation/replies.py); with --qa, fact questions too."""
    from app.evaluation.facts import facts_report, load_fact_items
    from app.evaluation.replies import load_lines, quality_report

    lines = load_lines(Path(args.file))
    qa = load_fact_items(Path(args.qa)) if args.qa else None
    if args.limit:
        lines, qa = lines[: args.limit], qa and qa[: args.limit]
    engine = _engine(args, _eval_config(args))
    report = quality_report(engine, lines, with_fluency=args.fluency, keep_items=args.items,
                            progress=_progress("quality"))
    if qa is not None:
        report["facts"] = facts_report(engine, qa, keep_items=args.items, progress=_progress("facts"))
    s = report["summary"]
    text = (f"{report['n']} replies ({report['generated']} generated): words p50 {s.get('words_median')} p90 "
            f"{s.get('words_p90')}, repeats {s.get('repeats_rate')}, clean {s.get('clean_rate')}, breaks "
            f"{s.get('breaks_rate')}, invented specifics {s.get('invented_rate')}, signature phrase "
            f"{s.get('signature_rate')}, in voice {s.get('in_voice_rate')}"
            + (f", fluency {s.get('fluency_median')}" if args.fluency else ""))
    _emit(args, report, text)


def cmd_eval_router(args) -> None:
    from app.config import Cast
    from app.cues import Cues
    from app.dialogue import build_router
    from app.evaluation.facts import router_report
    from app.router import load_router_items
    from retrieval.embeddings import SentenceTransformerEmbedder
    from retrieval.index import LoreIndex

    cfg = _config(args)
    items = load_router_items(Path(args.file))
    cast = Cast.load(cfg.paths.npcs, cfg.world)
    emb = SentenceTransformerEmbedder(cfg.models.embedder, dtype=cfg.models.embedder_dtype)
    index = LoreIndex.open(cfg.paths.index, emb)
    router = build_router(cfg, cast, emb, index, Cues.load(cfg.world.cues))
    report = router_report(router, index, items, keep_errors=args.errors)
    lines = [f"accuracy {report['accuracy']} on {report['n']}"] + [
        f"  {g:8s} recall {v['recall']} precision {v['precision']} (n={v['n']})"
        for g, v in report["per_label"].items()]
    _emit(args, report, "\n".join(lines))


def cmd_eval_ab(args) -> None:
    from app.evaluation.ab import run_ab

    summary = run_ab(Path(args.eval_config), Path(args.out), limit=args.limit, resume=args.resume,
                     progress=not args.json)
    ref = summary["reference"]
    lines = [f"report: {Path(args.out) / 'report.md'} (and report.html, summary.json, answers.jsonl)"]
    for m, row in summary["table"].items():
        lines.append(f"  {m:16s} " + "  ".join(f"{v}={c['mean']:.3f}" for v, c in row.items()))
    lines.append(f"  differences are against `{ref}`; see the report for intervals and tests")
    _emit(args, {k: summary[k] for k in ("reference", "table", "comparisons", "run")}, "\n".join(lines))


def cmd_eval_mc(args) -> None:
    from app.evaluation.mc import forgetting_report, load_mc, score_mc
    from tuning.base import load_base, prepare_model

    cfg = _config(args)
    items = load_mc(Path(args.file), args.format, args.limit)
    model_dir = prepare_model(cfg.models.llm, cfg.models.cache_dir)
    model, tok = load_base(model_dir, args.dtype)
    if args.forgetting:
        from app.config import Cast

        cast = Cast.load(Path(args.forgetting), cfg.world)
        adapters = {n.id: n.adapter for n in cast.npcs if n.adapter is not None}
        if not adapters:
            raise EternaError(f"{args.forgetting}: no NPC has an adapter; nothing to compare")
        report = forgetting_report(model, tok, model_dir, items, adapters)
        lines = [f"base: accuracy {report['base']['accuracy']} (n={report['n']})"] + [
            f"  {npc:14s} {r['accuracy']:.4f}  delta {r['delta']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}]  "
            f"McNemar p {r['p']:.3g}" for npc, r in report["adapters"].items()]
        _emit(args, report, "\n".join(lines))
        return
    if args.adapter:
        from tuning.adapters import attach_adapter, use_adapter
        from tuning.base import model_fingerprint

        model = attach_adapter(model, "eval", Path(args.adapter), model_fingerprint(model_dir))
        with use_adapter(model, "eval"):
            result = score_mc(model, tok, items)
    else:
        result = score_mc(model, tok, items)
    out = {k: result[k] for k in ("accuracy", "acc_norm", "n")}
    out.update(format=args.format, file=str(args.file), adapter=args.adapter, dtype=args.dtype)
    _emit(args, out, f"accuracy {out['accuracy']}  acc_norm {out['acc_norm']}  (n={out['n']})")


def cmd_eval_retrieval(args) -> None:
    from app.evaluation.retrieval_eval import evaluate_beir
    from retrieval.embeddings import SentenceTransformerEmbedder

    cfg = _config(args)
    modes = ["dense", "bm25", "hybrid"] if args.mode == "all" else [args.mode]
    embedder = SentenceTransformerEmbedder(cfg.models.embedder, dtype=cfg.models.embedder_dtype) \
        if modes != ["bm25"] or args.tune_on else None
    name = embedder.id if embedder is not None else cfg.models.embedder  # the dtype is part of the id: own cache
    weight = cfg.retrieval.hybrid_weight if args.weight is None else args.weight
    tuned = None
    if args.tune_on:
        if args.tune_on == args.split:
            raise EternaError(f"--tune-on {args.tune_on}: tune on another split than the one reported (--split)")
        from app.evaluation.retrieval_eval import tune_weight

        tuned = tune_weight(Path(args.beir), embedder, name, cfg.models.cache_dir / "beir",
                            split=args.tune_on, k=args.k)
        weight = tuned["weight"]
    res = {m: evaluate_beir(Path(args.beir), embedder, name, cfg.models.cache_dir / "beir",
                            split=args.split, mode=m, k=args.k, weight=weight, limit=args.limit) for m in modes}
    keys = ("ndcg@10", "recall@5", "recall@100", "mrr@10", "queries", "docs", "ms_per_query")
    text = "\n".join(f"{m:<7}" + "  ".join(f"{k} {r[k]}" for k in keys) for m, r in res.items())
    out = res[modes[0]] if len(modes) == 1 else res
    if tuned:
        out = {**out, "tuned": tuned}
        text += f"\nhybrid weight {tuned['weight']} chosen on the {tuned['split']} split ({tuned['queries']} queries)"
    _emit(args, out, text)


def cmd_eval_review(args) -> None:
    from app.evaluation.review import import_choices, write_review_page

    if args.import_file:
        report = import_choices(Path(args.import_file), Path(args.pairs_out) if args.pairs_out else None)
        _emit(args, report, json.dumps(report, indent=1))
        return
    if not args.run or not args.out:
        raise EternaError("eval review needs --run DIR --out PAGE.html, or --import CHOICES.json")
    info = write_review_page(Path(args.run), Path(args.out), args.a, args.b, args.limit)
    _emit(args, info, f"{info['pairs']} pairs: open {info['page']}; the key is in {info['key']}")


def cmd_validate(args) -> int:
    """The project's files; or, with --data, one training file through the data gate. Exit 3 when data has errors."""
    from app.validate import data_tokenizer, validate_project

    if args.data:
        return _validate_data(args)
    cfg = _config(args)
    gates: list = []
    report = validate_project(cfg, tokenizer=data_tokenizer(cfg), reports=gates)
    text = "\n".join([f"ok  {k}: {v}" for k, v in report.items() if k != "data"] + [g.render(limit=10)
                                                                                    for g in gates])
    _emit(args, report, text)
    return _data_verdict(report["data"])


def _validate_data(args) -> int:
    from app.validate import data_section, data_tokenizer, lore_linter
    from retrieval.corpus import load_corpus
    from tuning.gate import gate_file
    from tuning.sft import SFTRecipe

    tokenizer = facts = None
    if Path(args.config).is_file():  # the project's tokenizer and lore when there is a project; optional here
        cfg = _config(args)
        tokenizer = data_tokenizer(cfg)
        if not args.no_facts and cfg.paths.corpus.is_dir():
            facts = lore_linter(load_corpus(cfg.paths.corpus), [])
    if args.max_length is not None and args.max_length < 1:
        raise EternaError("--max-length must be at least 1")
    recipe = SFTRecipe()
    gate = gate_file(Path(args.data), kind=args.kind, fmt=args.format, max_length=args.max_length or recipe.max_length,
                     overlong=args.overlong or recipe.overlong, tokenizer=tokenizer, facts=facts)
    note = "" if facts is not None else "\n  (fact linter not run: no project lore, or --no-facts)"
    _emit(args, {**gate.to_json(), "facts_checked": facts is not None}, gate.render(limit=None) + note)
    return _data_verdict(data_section([gate]))


def _data_verdict(data: dict) -> int:
    if data["ok"]:
        return 0
    print(f"error: the training data has {data['errors']} error(s); the report lists each with its file and line",
          file=sys.stderr)
    return 3


def cmd_doctor(args) -> None:
    import logging

    from app.doctor import render, report

    probe_log = logging.getLogger("eterna.probe")
    level = probe_log.level
    probe_log.setLevel(logging.ERROR)  # the report says it, once
    try:
        r = report(_config(args))
    finally:
        probe_log.setLevel(level)
    _emit(args, r, render(r))


def _cache_dir(args) -> Path:
    """The config's model cache, where an adapter's named base is prepared (the default when no config is here)."""
    try:
        return _config(args).models.cache_dir
    except EternaError:
        return Path(".eterna/models")


def cmd_adapters_merge(args) -> None:
    from tuning.merge import merge_adapter

    m = merge_adapter(Path(args.adapter), Path(args.out), base_dir=args.base and Path(args.base),
                      allow_qlora=args.allow_qlora, dtype=args.dtype, log=True, cache_dir=_cache_dir(args))
    _emit(args, {"model": str(args.out), **m}, f"merged {args.adapter} into its base -> {args.out} "
          f"({m['parameters']} parameters, {m['dtype']}). Set `models.llm: {args.out}` to serve it.")


def cmd_adapters_export_gguf(args) -> None:
    from tuning.merge import export_gguf

    path = export_gguf(Path(args.adapter), Path(args.out), base_dir=args.base and Path(args.base),
                       cache_dir=_cache_dir(args))
    _emit(args, {"gguf": str(path), "bytes": path.stat().st_size},
          f"GGUF LoRA -> {path} ({path.stat().st_size} bytes); llama.cpp applies it with --lora {path}")


# --- parser -----------------------------------------------------------------------------------------------

def _checkpoint_flags(sp) -> None:
    sp.add_argument("--save-steps", type=int, help="checkpoint every N optimizer steps into <out>.checkpoints/")
    sp.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint of an "
                                                          "interrupted run of the same data and recipe")
    sp.add_argument("--keep-checkpoints", action="store_true", help="keep <out>.checkpoints/ after publishing "
                                                                    "(default: removed)")


def _format_names() -> str:
    from tuning.formats import FORMATS

    return ", ".join(FORMATS)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eterna", description="Eterna: NPC dialogue with RAG for facts and "
                                                            "fine-tuned adapters for form.")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="main config (default: configs/eterna.yaml)")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, *, json_flag=True, npcs=False, index=False, corpus=False):
        if json_flag:
            sp.add_argument("--json", action="store_true", help="print one JSON object per result on stdout")
        if npcs:
            sp.add_argument("--npcs", help="cast file (default: paths.npcs)")
        if index:
            sp.add_argument("--index", help="index directory (default: paths.index)")
        if corpus:
            sp.add_argument("--corpus", help="lore directory (default: paths.corpus)")

    models = sub.add_parser("models", help="manage the base and embedding models").add_subparsers(
        dest="sub", required=True)
    sp = models.add_parser("prepare", help="convert the builtin GGUF once and check the embedder")
    common(sp)
    sp.set_defaults(fn=cmd_models_prepare)

    index = sub.add_parser("index", help="build and query the lore index").add_subparsers(dest="sub", required=True)
    sp = index.add_parser("rebuild", help="(re)build the index from the lore corpus (incremental, atomic)")
    sp.add_argument("--force", action="store_true", help="write a new generation even if nothing changed")
    common(sp, corpus=True, index=True)
    sp.set_defaults(fn=cmd_index_rebuild)
    sp = index.add_parser("list", help="list the kept generations (* = live)")
    common(sp, index=True)
    sp.set_defaults(fn=cmd_index_list)
    sp = index.add_parser("rollback", help="make an older generation live (default: the previous one)")
    sp.add_argument("generation", nargs="?")
    common(sp, index=True)
    sp.set_defaults(fn=cmd_index_rollback)
    sp = index.add_parser("search", help="search the index")
    sp.add_argument("query")
    sp.add_argument("--k", type=int, default=5)
    sp.add_argument("--npc", help="only what this NPC may know")
    sp.add_argument("--chapter", type=int, help="only what a player in this chapter may learn")
    sp.add_argument("--mode", choices=["dense", "bm25", "hybrid"], help="override retrieval.mode of the config")
    common(sp, index=True, npcs=True)
    sp.set_defaults(fn=cmd_index_search)

    def no_adapters(sp):
        sp.add_argument("--no-adapters", action="store_true",
                        help="load none of the cast's adapters: the base model speaks for everyone")

    sp = sub.add_parser("say", help="one NPC reply (or a batch with --file)")
    sp.add_argument("--backend", choices=["auto", "transformers", "llamacpp", "batched"],
                    help="override models.backend")
    sp.add_argument("text", nargs="?")
    sp.add_argument("--npc")
    sp.add_argument("--file", help="JSONL lines {npc, text, chapter, session}; one reply per line")
    sp.add_argument("--chapter", type=int, default=1)
    sp.add_argument("--session", default="default")
    common(sp, npcs=True, index=True)
    no_adapters(sp)
    sp.set_defaults(fn=cmd_say)

    sp = sub.add_parser("chat", help="talk to one NPC interactively")
    sp.add_argument("--backend", choices=["auto", "transformers", "llamacpp", "batched"],
                    help="override models.backend")
    sp.add_argument("--npc", required=True)
    sp.add_argument("--chapter", type=int, default=1)
    sp.add_argument("--session", default="chat")
    common(sp, json_flag=False, npcs=True, index=True)
    no_adapters(sp)
    sp.set_defaults(fn=cmd_chat)

    sp = sub.add_parser("serve", help="HTTP server: Eterna's routes and an OpenAI-compatible chat API")
    sp.add_argument("--host", default="127.0.0.1", help="default: loopback only")
    sp.add_argument("--port", type=int, default=8000)
    sp.add_argument("--workers", type=int, default=1, help="processes, each with its own engine")
    sp.add_argument("--api-key", default=os.environ.get("ETERNA_API_KEY"),
                    help="require `Authorization: Bearer KEY` (default: $ETERNA_API_KEY, else none)")
    sp.add_argument("--queue", type=int, default=16, help="requests in progress at most; more get 429 at once")
    sp.add_argument("--backend", choices=["auto", "transformers", "llamacpp", "batched"],
                    help="override models.backend")
    common(sp, json_flag=False, npcs=True, index=True)
    sp.set_defaults(fn=cmd_serve)

    sp = sub.add_parser("demo", help="run the scripted multi-NPC scene")
    sp.add_argument("--scene", help="scene JSONL (default: paths.scenes/demo.jsonl)")
    common(sp, npcs=True, index=True)
    no_adapters(sp)
    sp.set_defaults(fn=cmd_demo)

    ads = sub.add_parser("adapters", help="ship, merge or export trained adapters").add_subparsers(
        dest="sub", required=True)
    sp = ads.add_parser("ship", help="halve trained adapters to float16 and copy them where the cast file's "
                                     "`adapter:` entries point (refuses adapters whose data or prompt changed)")
    sp.add_argument("--npc", action="append", help="this NPC only (repeatable; default: every NPC with an adapter)")
    sp.add_argument("--from", dest="source", help="folder of trained adapters, <npc>/ each (default: paths.adapters)")
    sp.add_argument("--to", help="ship into DIR/<npc> instead of the cast file's `adapter:` paths")
    common(sp, npcs=True)
    sp.set_defaults(fn=cmd_adapters_ship)

    train = sub.add_parser("train", help="fine-tune adapters").add_subparsers(dest="sub", required=True)
    sp = train.add_parser("sft", help="fine-tune one NPC's voice on its style set (LoRA by default)")
    sp.add_argument("--npc", required=True)
    sp.add_argument("--data", help="chat data: messages, alpaca or sharegpt rows, JSONL or a JSON array "
                                   "(default: paths.style/<npc>.jsonl)")
    sp.add_argument("--out", help="adapter folder (default: paths.adapters/<npc>)")
    sp.add_argument("--max-steps", type=int)
    sp.add_argument("--epochs", type=float)
    sp.add_argument("--rank", type=int)
    sp.add_argument("--method", help="lora (default), dora, qlora, ia3, prompt, prefix, adapter (bottleneck), full")
    sp.add_argument("--params", help='the method\'s parameters as JSON, e.g. \'{"r": 16}\' or '
                                     '\'{"num_virtual_tokens": 20}\'')
    sp.add_argument("--lr", type=float)
    sp.add_argument("--max-length", type=int, help="tokens per example, system prompt included (default 384)")
    sp.add_argument("--overlong", choices=["drop", "truncate", "error"],
                    help="examples over --max-length: drop (default), truncate, or error")
    sp.add_argument("--format", help="force the data format (default: detected): " + _format_names())
    sp.add_argument("--skip-bad-rows", action="store_true",
                    help="train on the rows that pass the data gate instead of refusing data with errors")
    sp.add_argument("--recipe", metavar="FILE", help="recipe YAML (configs/recipes/); the flags above override it")
    _checkpoint_flags(sp)
    common(sp, npcs=True)
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
    sp.add_argument("--max-steps", type=int)
    sp.add_argument("--epochs", type=float)
    sp.add_argument("--beta", type=float, help="DPO beta (default 0.1)")
    sp.add_argument("--lr", type=float)
    sp.add_argument("--held-out", type=float, help="share of pairs scored before and after, not trained on "
                                                   "(default 0.2)")
    _checkpoint_flags(sp)
    common(sp, npcs=True)
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
    sp.add_argument("--max-steps", type=int)
    sp.add_argument("--epochs", type=float)
    sp.add_argument("--lr", type=float)
    common(sp, npcs=True)
    sp.set_defaults(fn=cmd_train_distill)

    sp = ads.add_parser("merge", help="fold a LoRA/DoRA/IA3 adapter into its base: a full checkpoint that "
                                           "serves as models.llm with no adapter overhead")
    sp.add_argument("--adapter", required=True, metavar="DIR")
    sp.add_argument("--out", required=True, metavar="DIR", help="the merged checkpoint folder")
    sp.add_argument("--base", metavar="DIR", help="the base checkpoint (default: the one the adapter's manifest "
                                                  "names)")
    sp.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    sp.add_argument("--allow-qlora", action="store_true", help="merge a QLoRA adapter into the full-precision base")
    common(sp)
    sp.set_defaults(fn=cmd_adapters_merge)
    sp = ads.add_parser("export-gguf", help="write a LoRA adapter as a GGUF LoRA for llama.cpp")
    sp.add_argument("--adapter", required=True, metavar="DIR")
    sp.add_argument("--out", required=True, metavar="FILE", help="the .gguf file to write")
    sp.add_argument("--base", metavar="DIR", help="the base checkpoint (default: the one the adapter's manifest "
                                                  "names)")
    common(sp)
    sp.set_defaults(fn=cmd_adapters_export_gguf)

    ev = sub.add_parser("eval", help="measure a world's figures").add_subparsers(dest="sub", required=True)
    sp = ev.add_parser("facts", help="fact questions: gold answer in the reply, spoilers, 'I do not know'")
    sp.add_argument("--file", required=True, help='JSONL {"npc", "question", "answers", "chapter", "doc"}')
    sp.add_argument("--limit", type=int, default=0, help="first N items only")
    sp.add_argument("--items", action="store_true", help="include every item's reply in the JSON report")
    common(sp, npcs=True, index=True)
    sp.set_defaults(fn=cmd_eval_facts)
    sp = ev.add_parser("quality", help="small talk as a player meets it: length, loops, clean text, breaks, "
                                       "invented specifics, signature phrases, fluency; --qa adds fact questions")
    sp.add_argument("--file", required=True, help='JSONL {"npc", "text"} (e.g. eval/style_prompts.jsonl)')
    sp.add_argument("--qa", help="fact questions too (the `eval facts` format): answer-first, length, clean text")
    sp.add_argument("--limit", type=int, default=0, help="first N lines (and questions) only")
    sp.add_argument("--items", action="store_true", help="include every reply in the JSON report")
    sp.add_argument("--fluency", action="store_true", help="score fluency under the base model (loads it in fp32)")
    sp.add_argument("--no-adapters", action="store_true", help="the base model speaks for every character")
    common(sp, npcs=True, index=True)
    sp.set_defaults(fn=cmd_eval_quality)
    sp = ev.add_parser("router", help="router accuracy, per-label recall and precision, confusion")
    sp.add_argument("--file", required=True, help='JSONL {"text", "label"}')
    sp.add_argument("--errors", action="store_true", help="include the misrouted lines in the JSON report")
    common(sp, npcs=True, index=True)
    sp.set_defaults(fn=cmd_eval_router)

    sp = ev.add_parser("ab", help="A/B harness: the same items through every variant; report with intervals")
    sp.add_argument("--config", dest="eval_config", required=True, help="eval config, e.g. configs/eval/NAME.yaml")
    sp.add_argument("--out", required=True, help="output folder (answers.jsonl, summary.json, report.md/html)")
    sp.add_argument("--limit", type=int, help="items per set at most")
    sp.add_argument("--resume", action="store_true", help="finish a run in --out, asking only what is missing")
    common(sp)
    sp.set_defaults(fn=cmd_eval_ab)

    sp = ev.add_parser("retrieval", help="retrieval quality on a BEIR folder (nDCG@10, recall, MRR)")
    sp.add_argument("--beir", required=True, help="folder with corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv")
    sp.add_argument("--split", default="test")
    sp.add_argument("--mode", default="hybrid", choices=["dense", "bm25", "hybrid", "all"],
                    help="all: the three side by side, one JSON object per mode")
    sp.add_argument("--k", type=int, default=100, help="documents ranked per query")
    sp.add_argument("--weight", type=float,
                    help="hybrid: weight of dense scores (0-1; default retrieval.hybrid_weight)")
    sp.add_argument("--limit", type=int, help="first N judged queries only")
    sp.add_argument("--tune-on", metavar="SPLIT", help="choose the hybrid weight on this split (e.g. train or dev; "
                                                       "a grid over 0-1), then report --split with it")
    common(sp)
    sp.set_defaults(fn=cmd_eval_retrieval)

    sp = ev.add_parser("review", help="blind side-by-side review page of an A/B run, and importing its choices")
    sp.add_argument("--run", help="an `eval ab` output folder")
    sp.add_argument("--out", help="the page to write")
    sp.add_argument("--a", help="first variant (default: the first that is not the reference)")
    sp.add_argument("--b", help="second variant (default: the run's reference)")
    sp.add_argument("--limit", type=int, help="pairs at most")
    sp.add_argument("--import", dest="import_file", help="a choices.json downloaded from the page")
    sp.add_argument("--pairs-out", help="with --import: write the preferences as DPO pairs here, <npc>.jsonl")
    common(sp)
    sp.set_defaults(fn=cmd_eval_review)

    sp = ev.add_parser("mc", help="multiple-choice accuracy by log-likelihood (lm-eval protocol)")
    sp.add_argument("--file", required=True)
    sp.add_argument("--format", required=True, choices=["arc", "mmlu", "hellaswag"])
    sp.add_argument("--adapter", help="a PEFT adapter to score with")
    sp.add_argument("--forgetting", metavar="NPCS_FILE", help="forgetting report: the base, then each adapter of "
                                                             "this cast file, with the delta and its interval")
    sp.add_argument("--limit", type=int)
    sp.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    common(sp)
    sp.set_defaults(fn=cmd_eval_mc)

    sp = train.add_parser("raft", help="grounded-answer adapter from the world's own index (RAFT)")
    sp.add_argument("--npc", help="one character's scope and voice")
    sp.add_argument("--all", action="store_true", help="the whole cast: one shared grounding adapter")
    sp.add_argument("--chapter", type=int, default=1, help="lore up to this chapter only (default 1: no spoilers)")
    sp.add_argument("--examples", type=int, default=300)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--out", help="adapter folder (default: paths.adapters/raft-<npc|all>)")
    sp.add_argument("--max-steps", type=int)
    sp.add_argument("--epochs", type=float)
    common(sp, npcs=True, index=True)
    sp.set_defaults(fn=cmd_train_raft)

    sp = sub.add_parser("validate", help="check configs and every corpus file against the code; with --data, "
                                         "report every problem of one training file")
    sp.add_argument("--data", help="one training file (JSONL or a JSON array) to check instead of the project")
    sp.add_argument("--kind", choices=["chat", "preference"], help="with --data: the kind it must hold "
                                                                   "(default: whatever it holds)")
    sp.add_argument("--format", help="with --data: force the format (default: detected): " + _format_names())
    sp.add_argument("--max-length", type=int, help="with --data: tokens per example (default 384)")
    sp.add_argument("--overlong", choices=["drop", "truncate", "error"],
                    help="with --data: what over-long examples are (default drop: a warning)")
    sp.add_argument("--no-facts", action="store_true", help="with --data: skip the fact linter")
    common(sp)
    sp.set_defaults(fn=cmd_validate)
    sp = sub.add_parser("doctor", help="what this machine runs and why: backend and its probe, CPU, llama.cpp "
                                       "build, torch, model files, index, adapters (paste it into a bug report)")
    common(sp, npcs=True, index=True)
    sp.set_defaults(fn=cmd_doctor)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        rc = args.fn(args)
        return int(rc or 0)
    except EternaError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if getattr(args, "json", False):
            print(json.dumps({"error": msg, "type": type(e).__name__}), flush=True)
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
