"""`eterna serve`: the HTTP server (app/server.py), in one process or in --workers N."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from app.cli.common import add_backend_flag, add_flags, make_engine


def register(sub) -> None:
    sp = sub.add_parser("serve", help="HTTP server: Eterna's routes and an OpenAI-compatible chat API")
    sp.add_argument("--host", default="127.0.0.1", help="default: loopback only")
    sp.add_argument("--port", type=int, default=8000)
    sp.add_argument("--workers", type=int, default=1, help="processes, each with its own engine")
    sp.add_argument("--api-key", default=os.environ.get("ETERNA_API_KEY"),
                    help="require `Authorization: Bearer KEY` (default: $ETERNA_API_KEY, else none)")
    sp.add_argument("--queue", type=int, default=16, help="requests in progress at most; more get 429 at once")
    add_backend_flag(sp)
    add_flags(sp, json_flag=False, npcs=True, index=True)
    sp.set_defaults(fn=cmd_serve)


def cmd_serve(args) -> int:
    import uvicorn

    from app.server import create_app, limit_malloc_arenas, serve_workers

    limit_malloc_arenas()  # before the engine's threads start

    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        print(f"warning: serving on {args.host} without --api-key: anyone who reaches this port can talk to "
              "your characters", file=sys.stderr)
    if args.workers > 1:
        # each worker process loads its own engine; session memory is shared safely through the session store,
        # which is opened here first: an unreachable one stops the command, not each worker in a restart loop
        from app.config import EternaConfig
        from app.memory import open_store

        cfg = EternaConfig.load(Path(args.config))
        open_store(cfg.memory, cfg.paths.sessions)
        serve_workers(args.workers, args.host, args.port, config=Path(args.config).resolve(),
                      api_key=args.api_key, queue=args.queue, backend=args.backend,
                      npcs=args.npcs and Path(args.npcs).resolve(), index=args.index and Path(args.index).resolve())
        return 0
    engine = make_engine(args)
    print(f"eterna serve: {len(engine.cast.npcs)} NPCs, backend {engine.generator.name}, "
          f"http://{args.host}:{args.port}/docs", file=sys.stderr, flush=True)
    uvicorn.run(create_app(engine, api_key=args.api_key, queue=args.queue), host=args.host, port=args.port,
                log_level="warning")
    return 0
