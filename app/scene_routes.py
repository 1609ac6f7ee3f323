"""The server's scene routes (app/server.py adds them): `POST /v1/scenes/{id}/say` -> a SceneTurn
(`{"replies": [Reply, ...], "next_speaker", ...}`) and `POST /v1/scenes/{id}/say/stream` -> server-sent events:
`token` ({npc, text}) as each reply is decoded, `reply` (a Reply) as each is final, then one `turn` (the SceneTurn);
`GET /v1/scenes` lists the declared scenes, and `GET /v1/models` lists one `scene:<id>` entry per declared scene.

A scene is declared by a scene file in the world's `paths.scenes` (app/scene_files.py); a request may instead bring
its own `npcs` (and `director`). Bad input (unknown characters, one character, `to` outside the scene) is a 422
naming the field; an undeclared scene without `npcs` is a 404.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from app.openai_tools import tool_calls
from app.scene_files import declared_scenes
from app.scene_memory import RamStore
from app.scenes import PLAYER, SceneTurn
from app.server_io import _text, chat_chunk, chat_error, last_user
from app.turn import Reply
from retrieval.gates import State


class SceneSayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="the player's line")
    session: str = Field("default", description="the player's session (the scene's transcript is kept under it)")
    to: str | None = Field(None, description="the character the line is for (else who the player names, else the "
                                             "responder policy)")
    chapter: int = Field(1, ge=1)
    state: dict[str, Any] | None = Field(None, description="the game's state, a JSON object")
    npcs: list[str] | None = Field(None, description="the scene's characters, for a scene no file declares")
    director: str | None = Field(None, description="the director of such a scene")
    reactions: int | None = Field(None, ge=0, description="reactions after the answer (default: the scene's, 1)")


def seed_transcript(scene, messages: list, line) -> None:
    """A stateless request's messages before `line` as the scene's transcript: the player's lines, and each
    assistant message's "Name: text" lines said by the scene's characters (plain lines: never evidence for the
    others; a line naming no one of the scene is left out)."""
    who = [*scene.npcs, *([scene.director] if scene.director else [])]
    by_name = {scene.specs[n].name.casefold(): n for n in who}
    for m in messages[: messages.index(line)]:
        if m.role == "user":
            scene.transcript.add(PLAYER, _text(m.content), "line")
        elif m.role == "assistant":
            for row in _text(m.content).splitlines():
                name, sep, said = row.partition(": ")
                if sep and name.strip().casefold() in by_name and said.strip():
                    scene.transcript.add(by_name[name.strip().casefold()], said.strip(), "answer")


def scenes_of(engine) -> dict:
    return declared_scenes(engine.config.paths.scenes)


def scene_models(engine, created: int) -> list[dict]:
    """`GET /v1/models` entries: one per declared scene."""
    return [{"id": f"scene:{s.id}", "object": "model", "created": created, "owned_by": "eterna", "name": s.id,
             "role": "scene", "npcs": s.npcs, "director": s.director} for s in scenes_of(engine).values()]


def add_scene_routes(app: FastAPI, engine, *, auth, run, start_stream, first_ok, enter, sse) -> None:
    def make(scene_id: str, body: SceneSayRequest, store=None):
        declared = scenes_of(engine).get(scene_id)
        if body.npcs is None and declared is None:
            raise HTTPException(404, f"unknown scene {scene_id!r}: declare it with a scene file in paths.scenes "
                                     "(GET /v1/scenes lists them) or send its `npcs`")
        npcs = body.npcs if body.npcs is not None else declared.npcs
        director = body.director if body.npcs is not None else declared.director
        reactions = body.reactions if body.reactions is not None else (declared.reactions if declared else None)
        return engine.scene(scene_id, npcs, director=director, session=body.session, store=store,
                            **({} if reactions is None else {"reactions": reactions}))

    def said(reply: Reply) -> str:
        names = {n.id: n.name for n in engine.cast.npcs}
        return f"{names.get(reply.npc, reply.npc)}: {reply.text}"

    async def scene_chat(body) -> dict | StreamingResponse:
        """`POST /v1/chat/completions` with `model: "scene:<id>"`: the last user message is a scene line (`to`
        may be sent as an extra field); the replies come back as one assistant message, "Name: text" per line,
        the answer's actions as `tool_calls`, the SceneTurn under `eterna`. `user` names the session (without
        it, a fresh one: the scene starts over)."""
        scene_id = body.model.split(":", 1)[1]
        if scene_id not in scenes_of(engine):
            raise HTTPException(404, f"unknown model {body.model!r}: GET /v1/models lists the scenes")
        extra = body.model_extra or {}
        line = last_user(body.messages)
        req = SceneSayRequest(text=_text(line.content), session=body.user or f"oa-scene-{uuid.uuid4().hex[:16]}",
                              to=extra.get("to"), chapter=body.chapter, state=body.state)
        # without `user` the request is stateless: its transcript lives in RAM for this request only, seeded with
        # the messages it brought along, and nothing is left in the session store
        scene = await run(make, scene_id, req, None if body.user else RamStore())
        if not body.user:
            seed_transcript(scene, body.messages, line)
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if not body.stream:
            turn = await run(scene.say, req.text, to=req.to, chapter=req.chapter, state=req.state)
            actions = [a for r in turn.replies for a in r.actions]
            message = {"role": "assistant", "content": "\n".join(said(r) for r in turn.replies)}
            if actions:
                message["tool_calls"] = tool_calls(actions)
            return {"id": cid, "object": "chat.completion", "created": created, "model": body.model,
                    "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if actions else "stop"}],
                    "eterna": turn.to_json()}

        def chunk(delta: dict, finish: str | None = None) -> str:
            return chat_chunk(cid, created, body.model, delta, finish)

        enter()
        items = await first_ok(start_stream(lambda: scene.stream(req.text, to=req.to, chapter=req.chapter,
                                                                 state=req.state)))

        async def events() -> AsyncIterator[str]:  # one content piece per reply, as each is said
            yield chunk({"role": "assistant", "content": ""})
            actions, first = [], True
            async for it in items:
                if isinstance(it, Reply):
                    actions += it.actions
                    yield chunk({"content": ("" if first else "\n") + said(it)})
                    first = False
                elif isinstance(it, Exception):
                    yield chat_error(it)
            if actions:
                yield chunk({"tool_calls": [{"index": i, **c} for i, c in enumerate(tool_calls(actions))]})
            yield chunk({}, "tool_calls" if actions else "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.get("/v1/scenes", dependencies=[Depends(auth)])
    def scenes() -> dict:
        return {"scenes": [{"id": s.id, "npcs": s.npcs, "director": s.director}
                           for s in scenes_of(engine).values()]}

    @app.post("/v1/scenes/{scene_id}/say", dependencies=[Depends(auth)])
    async def scene_say(scene_id: str, body: SceneSayRequest) -> dict:
        scene = await run(make, scene_id, body)
        turn = await run(scene.say, body.text, to=body.to, chapter=body.chapter, state=body.state)
        return turn.to_json()

    @app.post("/v1/scenes/{scene_id}/say/stream", dependencies=[Depends(auth)],
              responses={200: {"content": {"text/event-stream": {}},
                               "description": "`token` events ({npc, text}), a `reply` event per reply, then `turn`"}})
    async def scene_stream(scene_id: str, body: SceneSayRequest) -> StreamingResponse:
        scene = await run(make, scene_id, body)  # bad input is a 422 before the stream starts
        State.of(body.state)
        enter()
        items = await first_ok(start_stream(lambda: scene.stream(body.text, to=body.to, chapter=body.chapter,
                                                                 state=body.state)))

        async def events() -> AsyncIterator[str]:
            async for it in items:
                if isinstance(it, SceneTurn):
                    yield sse("turn", it.to_json())
                elif isinstance(it, Reply):
                    yield sse("reply", it.to_json())
                elif isinstance(it, Exception):
                    yield sse("error", {"detail": str(it)})
                else:
                    yield sse("token", {"npc": it[0], "text": it[1]})

        return StreamingResponse(events(), media_type="text/event-stream")

    return scene_chat
