"""The game-facing HTTP server (FastAPI): Eterna's own routes and an OpenAI-compatible chat API.

    eterna serve [--host 127.0.0.1] [--port 8000] [--workers N] [--api-key KEY] [--queue N]

- `POST /v1/npcs/{id}/say` -> a `Reply`; `POST /v1/npcs/{id}/say/stream` -> server-sent events: `token` events,
  then one `reply` event with the whole `Reply` (its text is authoritative).
- `POST /v1/scenes/{id}/say` (+ `/stream`) -> a scene line with several characters (app/scene_routes.py).
- `GET /v1/npcs`, `GET /v1/scenes`, `GET /healthz`, `GET /openapi.json`.
- `POST /v1/chat/completions` with `model` = NPC id, streaming included: existing OpenAI clients work unchanged.
  `user` names the player's session (its memory persists); without it the request is stateless and the history
  is the request's own `messages`. A declared action the player asks for comes back as `tool_calls`
  (`finish_reason: "tool_calls"`) beside the in-voice content; `tools` narrows which actions a call may return;
  a `role: "tool"` message (the game's result) joins the session's memory as an event. `chapter` and `state` (the game's state, passed to the character's scope) may
  be sent as extra body fields. `GET /v1/models` lists one model per character (what clients and routers ask
  first) and one `scene:<id>` per declared scene (a chat with it plays a scene line), `GET /v1/models/{id}` one; errors on these routes carry OpenAI's `{"error": {...}}` shape too.

A bounded queue: at most `queue` requests wait or run; past that the server answers 429 at once, never hangs.
Typed errors map to 4xx with the CLI's messages. Loopback by default; an optional bearer API key.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from app.action_turn import record_event
from app.dialogue import DialogueEngine, Reply
from app.server_io import _sse, _text, chat_chunk, chat_error, iter_sse, last_user, limit_malloc_arenas  # noqa: F401
from app.scene_routes import add_scene_routes, scene_models
from app.openai_tools import acknowledgement, allowed_tools, tool_calls, tool_results
from retrieval.errors import ConfigError, EternaError, InputError
from retrieval.gates import State


class SayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="the player's line")
    session: str = Field("default", description="the player's session id (memory is per session and NPC)")
    chapter: int = Field(1, ge=1)
    state: dict[str, Any] | None = Field(None, description="the game's state, a JSON object: lore whose `requires` "
                                                           "it fails is hidden (docs/worlds.md)")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI clients send many optional fields; unknown ones are ignored
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    user: str | None = None
    chapter: int = Field(1, ge=1)
    state: dict[str, Any] | None = None
    tools: list[Any] | None = None  # narrows the character's declared actions this call may return
    tool_choice: Any = None


class _Queue:
    """Admission control: at most `capacity` requests in the server at once; the rest get 429 immediately."""

    def __init__(self, capacity: int):
        self.capacity, self.inside, self._lock = capacity, 0, threading.Lock()

    def enter(self) -> None:
        with self._lock:
            if self.inside >= self.capacity:
                raise HTTPException(429, f"server busy: {self.inside} requests in progress (queue capacity "
                                         f"{self.capacity}); retry shortly", headers={"Retry-After": "1"})
            self.inside += 1

    def leave(self) -> None:
        with self._lock:
            self.inside -= 1


def _error(e: Exception) -> HTTPException:
    if isinstance(e, KeyError):  # an unknown NPC id
        return HTTPException(404, str(e.args[0]) if e.args else "unknown NPC")
    if isinstance(e, InputError):
        return HTTPException(422, str(e))
    if getattr(e, "retry_after", None) is not None:  # a service the turn needs is down (the session store): nothing
        return HTTPException(503, str(e), headers={"Retry-After": str(e.retry_after)})  # was written; retry later
    return HTTPException(400, str(e))


_OPENAI_TYPES = {401: "authentication_error", 404: "invalid_request_error", 422: "invalid_request_error",
                 429: "rate_limit_error", 503: "service_unavailable"}


def _error_body(path: str, status: int, message: str) -> dict:
    """`{"detail"}` for Eterna's routes; OpenAI's `{"error": {message, type, code}}` too on the OpenAI routes."""
    body: dict = {"detail": message}
    if path.startswith(("/v1/chat/", "/v1/models")):
        body["error"] = {"message": message, "type": _OPENAI_TYPES.get(status, "invalid_request_error"),
                         "param": None, "code": "model_not_found" if status == 404 else None}
    return body


def create_app(engine: DialogueEngine, *, api_key: str | None = None, queue: int = 16) -> FastAPI:
    if engine.config.grounding.on_unsupported == "keep":
        raise ConfigError("grounding.on_unsupported is `keep`: a generated fact reply that fails the support check "
                          "would reach players; `keep` is for A/B baselines only. Serve with `extract` or `idk`")
    app = FastAPI(title="Eterna", version="0.1.0",
                  description="NPC dialogue: RAG for facts, fine-tuned adapters for form.")
    q = _Queue(queue)
    app.state.engine, app.state.queue = engine, q
    started = int(time.time())

    def auth(request: Request) -> None:
        if api_key is None:
            return
        got = request.headers.get("authorization", "")
        if not secrets.compare_digest(got.encode(), f"Bearer {api_key}".encode()):
            raise HTTPException(401, "missing or wrong API key: send `Authorization: Bearer KEY`")

    def check_npc(npc: str) -> None:
        try:
            engine.cast.get(npc)
        except (KeyError, EternaError) as e:
            raise HTTPException(404, f"unknown NPC {npc!r}; GET /v1/npcs lists them") from e

    async def run(fn, *args, **kwargs):
        q.enter()
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except (EternaError, KeyError) as e:
            raise _error(e) from None
        finally:
            q.leave()

    def start_stream(make) -> AsyncIterator:
        """Run a blocking generator in a worker thread started now (so the queue slot taken by the caller is
        always given back, even if the client leaves before the response starts); drain it here."""
        loop = asyncio.get_running_loop()
        items: asyncio.Queue = asyncio.Queue()
        done = object()

        def put(it):
            loop.call_soon_threadsafe(items.put_nowait, it)

        def worker():
            try:
                for it in make():
                    put(it)
            except Exception as e:  # reported to the client as an error event
                put(e)
            finally:
                put(done)
                q.leave()

        threading.Thread(target=worker, daemon=True).start()

        async def drain():
            while (it := await items.get()) is not done:
                yield it
        return drain()

    async def first_ok(items: AsyncIterator) -> AsyncIterator:
        """Wait for a stream's first item: a typed error before anything was generated (a remote backend down:
        503 with Retry-After) is a plain HTTP error, not a 200 whose stream carries an error event."""
        try:
            first = await anext(items)
        except StopAsyncIteration:
            first = None
        if isinstance(first, (EternaError, KeyError)):
            raise _error(first)

        async def chain():
            if first is not None:
                yield first
            async for it in items:
                yield it
        return chain()

    @app.get("/healthz")
    def healthz() -> dict:
        report = getattr(engine.generator, "cache_report", None)
        choice = getattr(engine.generator, "choice", None) or {}
        return {"status": "ok", "backend": getattr(engine.generator, "name", "?"),
                "backend_reason": choice.get("reason"), "backend_configured": choice.get("configured"),
                "npcs": len(engine.cast.npcs),
                "index_generation": engine.index.path.name, "queue": {"inside": q.inside, "capacity": q.capacity},
                "sessions_in_ram": engine.memory.live(), "cache": report() if report else None}

    @app.get("/v1/npcs", dependencies=[Depends(auth)])
    def npcs() -> dict:
        return {"npcs": [{"id": n.id, "name": n.name, "role": n.role, "adapter": n.adapter is not None}
                         for n in engine.cast.npcs]}

    def model_card(npc) -> dict:
        return {"id": npc.id, "object": "model", "created": started, "owned_by": "eterna",
                "name": npc.name, "role": npc.role}

    @app.get("/v1/models", dependencies=[Depends(auth)])
    def models() -> dict:
        """OpenAI's model list: one model per character (what clients, front-ends and routers ask first), then one
        `scene:<id>` entry per declared scene (app/scene_routes.py)."""
        return {"object": "list", "data": [model_card(n) for n in engine.cast.npcs] + scene_models(engine, started)}

    @app.get("/v1/models/{model}", dependencies=[Depends(auth)])
    def model(model: str) -> dict:
        check_npc(model)
        return model_card(engine.cast.get(model))

    @app.post("/v1/npcs/{npc}/say", dependencies=[Depends(auth)])
    async def say(npc: str, body: SayRequest) -> dict:
        check_npc(npc)
        reply = await run(engine.say, npc, body.text, session=body.session, chapter=body.chapter, state=body.state)
        return reply.to_json()

    @app.post("/v1/npcs/{npc}/say/stream", dependencies=[Depends(auth)],
              responses={200: {"content": {"text/event-stream": {}},
                               "description": "`token` events ({text}), then one `reply` event (the Reply)"}})
    async def say_stream(npc: str, body: SayRequest) -> StreamingResponse:
        check_npc(npc)
        q.enter()  # before the response starts: a full queue is a 429, not a broken stream
        State.of(body.state)  # a bad state is a 422 before the stream starts
        items = await first_ok(start_stream(lambda: engine.stream(npc, body.text, session=body.session,
                                                                  chapter=body.chapter, state=body.state)))

        async def events() -> AsyncIterator[str]:
            async for it in items:
                if isinstance(it, Reply):
                    yield _sse("reply", it.to_json())
                elif isinstance(it, Exception):
                    yield _sse("error", {"detail": str(it), "status": _error(it).status_code})
                else:
                    yield _sse("token", {"text": it})

        return StreamingResponse(events(), media_type="text/event-stream")

    def chat_turn(body: ChatRequest) -> tuple[str, str, bool]:
        """(player text, session, remember): the last user message; a stateless request gets its own session,
        seeded with the request's earlier exchanges."""
        check_npc(body.model)
        line = last_user(body.messages)
        text = _text(line.content)
        if body.user:
            return text, body.user, True
        session = f"oa-{uuid.uuid4().hex[:16]}"
        history, pending = [], None
        for i, m in enumerate(body.messages[: body.messages.index(line)]):
            if m.role == "user":
                pending = _text(m.content)
            elif m.role == "assistant" and pending is not None:
                history.append((pending, _text(m.content)))
                pending = None
            elif m.role == "tool":  # the game's result of an action: an event in the seeded history
                history += [(f"[event: {name}] {said}", "") for name, said in tool_results(body.messages[: i + 1])]
        engine.memory.seed(session, body.model, history)
        return text, session, False

    def completion(body: ChatRequest, reply: Reply) -> dict:
        message = {"role": "assistant", "content": reply.text}
        if reply.actions:  # the action as OpenAI tool calls, beside the in-voice content
            message["tool_calls"] = tool_calls(reply.actions)
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
                "model": body.model,
                "choices": [{"index": 0, "message": message,
                             "finish_reason": "tool_calls" if reply.actions else "stop"}],
                "usage": {"prompt_tokens": reply.tokens.get("prompt", 0),
                          "completion_tokens": reply.tokens.get("reply", 0),
                          "total_tokens": reply.tokens.get("prompt", 0) + reply.tokens.get("reply", 0)},
                "eterna": reply.to_json()}

    @app.post("/v1/chat/completions", dependencies=[Depends(auth)])
    async def chat(body: ChatRequest):
        State.of(body.state)  # a bad state is a 422 before any work (or a stream) starts
        if body.model.startswith("scene:"):  # a scene GET /v1/models lists: its replies as one message
            return await scene_chat(body)
        tools = allowed_tools(body.tools, body.tool_choice)
        if body.messages[-1].role == "tool":  # the game reports what an action did: remembered, acknowledged
            check_npc(body.model)
            for name, said in tool_results(body.messages) if body.user else ():
                record_event(engine, body.user, body.model, name, said)
            return acknowledgement(body.model, engine.cast.get(body.model), body.stream)
        text, session, remember = chat_turn(body)
        if remember:  # the game's results of the character's last actions: events in the session's memory
            for name, said in tool_results(body.messages):
                record_event(engine, session, body.model, name, said)
        if not body.stream:
            try:
                reply = await run(engine.say, body.model, text, session=session, chapter=body.chapter,
                                  state=body.state, remember=remember, tools=tools)
            finally:
                if not remember:
                    engine.memory.forget(session)
            return completion(body, reply)
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def chunk(delta: dict, finish: str | None = None) -> str:
            return chat_chunk(cid, created, body.model, delta, finish)

        q.enter()

        def turn():
            try:
                yield from engine.stream(body.model, text, session=session, chapter=body.chapter, state=body.state,
                                         remember=remember, tools=tools)
            finally:
                if not remember:
                    engine.memory.forget(session)
        items = await first_ok(start_stream(turn))

        async def events() -> AsyncIterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            async for it in items:
                if isinstance(it, Reply) and it.actions:
                    calls = [{"index": i, **c} for i, c in enumerate(tool_calls(it.actions))]
                    yield chunk({"tool_calls": calls})
                    yield chunk({}, "tool_calls")
                elif isinstance(it, Reply):
                    yield chunk({}, "stop")
                elif isinstance(it, Exception):
                    yield chat_error(it)
                else:
                    yield chunk({"content": it})
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    scene_chat = add_scene_routes(app, engine, auth=auth, run=run, start_stream=start_stream, first_ok=first_ok, enter=q.enter,
                     sse=_sse)  # app/scene_routes.py

    @app.exception_handler(EternaError)
    async def eterna_error(request: Request, e: EternaError):
        http = _error(e)
        return JSONResponse(_error_body(request.url.path, http.status_code, http.detail),
                            status_code=http.status_code, headers=http.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException):
        return JSONResponse(_error_body(request.url.path, e.status_code, str(e.detail)), status_code=e.status_code,
                            headers=e.headers)

    return app


def app_from_settings(config: Path, *, api_key: str | None = None, queue: int = 16, backend: str | None = None,
                      npcs: Path | None = None, index: Path | None = None) -> FastAPI:
    """The app of one `eterna serve --workers N` process: it builds its own engine from these arguments."""
    from app.config import EternaConfig

    limit_malloc_arenas()

    cfg = EternaConfig.load(config)
    if backend:
        cfg = cfg.model_copy(update={"models": cfg.models.model_copy(update={"backend": backend})})
    engine = DialogueEngine.from_settings(cfg, npcs=npcs, index=index)
    return create_app(engine, api_key=api_key, queue=queue)


def serve_workers(workers: int, host: str, port: int, **settings) -> None:
    """`workers` processes sharing one listening socket, each serving `app_from_settings(**settings)`: the settings
    travel to each worker as the arguments of its app factory (pickled when uvicorn spawns it). uvicorn's
    supervisor binds the socket once, restarts a worker that dies and stops them all on Ctrl-C or SIGTERM."""
    import functools

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(functools.partial(app_from_settings, **settings), factory=True, host=host, port=port,
                            workers=workers, log_level="warning")
    try:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    except KeyboardInterrupt:
        pass
