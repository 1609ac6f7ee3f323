"""`eterna index`: build, list, roll back and search the lore index."""

from __future__ import annotations

from app.cli.common import add_flags, emit, load_config, retrieval_modes
from retrieval.errors import EternaError


def register(sub) -> None:
    index = sub.add_parser("index", help="build and query the lore index").add_subparsers(dest="sub", required=True)
    sp = index.add_parser("rebuild", help="(re)build the index from the lore corpus (incremental, atomic)")
    sp.add_argument("--force", action="store_true", help="write a new generation even if nothing changed")
    add_flags(sp, corpus=True, index=True)
    sp.set_defaults(fn=cmd_index_rebuild)
    sp = index.add_parser("list", help="list the kept generations (* = live)")
    add_flags(sp, index=True)
    sp.set_defaults(fn=cmd_index_list)
    sp = index.add_parser("rollback", help="make an older generation live (default: the previous one)")
    sp.add_argument("generation", nargs="?")
    add_flags(sp, index=True)
    sp.set_defaults(fn=cmd_index_rollback)
    sp = index.add_parser("search", help="search the index")
    sp.add_argument("query")
    sp.add_argument("--k", type=int, default=5)
    sp.add_argument("--npc", help="only what this NPC may know")
    sp.add_argument("--chapter", type=int, help="only what a player in this chapter may learn")
    sp.add_argument("--mode", choices=retrieval_modes(), help="override retrieval.mode of the config")
    add_flags(sp, index=True, npcs=True)
    sp.set_defaults(fn=cmd_index_search)


def cmd_index_rebuild(args) -> None:
    from app.config import Cast
    from retrieval.corpus import load_corpus
    from retrieval.embeddings import SentenceTransformerEmbedder
    from retrieval.rebuild import rebuild_index

    cfg = load_config(args)
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
    emit(args, out, text)


def cmd_index_list(args) -> None:
    from retrieval.rebuild import list_generations

    gens = list_generations(load_config(args).paths.index)
    lines = [f"{'*' if g['live'] else ' '} {g['generation']}  {g['documents']} docs  {g['chunks']} chunks  "
             f"{g['embedder']}" for g in gens] or ["no generations"]
    emit(args, {"generations": gens}, "\n".join(lines))


def cmd_index_rollback(args) -> None:
    from retrieval.rebuild import use_generation

    name = use_generation(load_config(args).paths.index, args.generation)
    emit(args, {"live": name}, f"generation {name} is live")


def cmd_index_search(args) -> None:
    from app.config import Cast
    from retrieval.embeddings import SentenceTransformerEmbedder
    from retrieval.index import LoreIndex
    from retrieval.types import Scope

    cfg = load_config(args)
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
        scope = npc.scope(args.chapter)
    emb = SentenceTransformerEmbedder(cfg.models.embedder, dtype=cfg.models.embedder_dtype)
    index = LoreIndex.open(cfg.paths.index, emb)
    retrieval = cfg.retrieval.model_copy(update={"mode": args.mode}) if args.mode else cfg.retrieval
    hits = retrieval.retriever(emb).search(index, query, emb.encode([query])[0], args.k, scope)
    out = {"query": query, "generation": index.path.name, "mode": retrieval.mode,
           "hits": [{**h.source(), "rank": h.rank, "title": h.chunk.title, "chapter": h.chunk.chapter,
                     "text": h.chunk.text} for h in hits]}
    lines = [f"{h.rank + 1}. {h.score:.3f}  {h.chunk.id}  (ch {h.chunk.chapter})  {h.chunk.text[:100]}..."
             for h in hits] or ["no hits"]
    emit(args, out, "\n".join(lines))
