"""The cast: the characters of a world (`npcs.yaml`), each with its persona, voice, scope of lore and adapter, typed
and validated at the edge like the config (`app/config.py` re-exports these models)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from app.actions import ActionSpec, check_actions
from app.config import WorldConfig, _read_yaml, _Strict, _validate
from retrieval.errors import AdapterError, ConfigError, UnknownNpcError
from retrieval.gates import State
from retrieval.types import Scope


class Markers(_Strict):
    """Detectable signs of a character's voice, used by the style evaluation (not by generation)."""

    opens: list[str] = Field(default_factory=list, description="a reply should start with one of these")
    closes: list[str] = Field(default_factory=list, description="a reply should end with one of these")

    def match(self, text: str) -> bool:
        t = text.strip()
        return (not self.opens or t.startswith(tuple(self.opens))) and \
            (not self.closes or any(c in t[-len(c) - 40:] for c in self.closes))


class NpcSpec(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str = Field(min_length=1)
    role: str = Field(min_length=1, description="director | npc | book, or a role the world declares")
    persona: str = Field(min_length=1)
    style: str = Field(min_length=1)
    knows: Literal["all"] | list[str]
    adapter: Path | None = None
    model: Path | None = Field(None, description="a student checkpoint (`eterna train distill`) that speaks for "
                                                 "this character instead of the base model and its adapter")
    markers: Markers | None = None
    idk: str | None = Field(None, description="this character's way of saying it does not know")
    deflect: str | None = Field(None, description="this character's way of turning aside a fourth-wall break")
    actions: list[ActionSpec] = Field(default_factory=list, description="what the player may ask this character to "
                                                                        "do (app/actions.py)")

    def kinds(self) -> frozenset[str] | None:
        return None if self.knows == "all" else frozenset(self.knows)

    def scope(self, chapter: int | None = None, state: object = None) -> Scope:
        """What this character may know, up to `chapter` (None: every chapter), in the game's `state` (a JSON
        object, checked by `State.of`; None: no state gate, as for every chapter: a turn always passes one)."""
        return Scope(npc=self.id, kinds=self.kinds(), chapter=chapter,
                     state=None if state is None else State.of(state))


class Cast(_Strict):
    npcs: list[NpcSpec] = Field(min_length=1)

    @field_validator("npcs")
    @classmethod
    def _unique(cls, v):
        seen = set()
        for n in v:
            if n.id in seen:
                raise ValueError(f"duplicate NPC id {n.id!r}")
            seen.add(n.id)
        return v

    @classmethod
    def load(cls, path: Path, world: WorldConfig | None = None) -> Cast:
        """Load a cast file; with a world, its roles and `knows` kinds are checked against what the world declares."""
        path = Path(path)
        cast = _validate(cls, _read_yaml(path), path)
        for n in cast.npcs:
            if n.adapter is not None and not n.adapter.is_absolute():
                n.adapter = (path.parent / n.adapter).resolve()
            if n.model is not None and not n.model.is_absolute():
                n.model = (path.parent / n.model).resolve()
        cast.check_models(path)
        check_actions(cast.npcs, path)  # names, JSON Schemas, gates: errors name the file and line
        if world is not None:
            cast.check_world(world, path)
        return cast

    def check_models(self, path: Path | str = "cast") -> None:
        """Every `model:` is a student checkpoint folder with its manifest."""
        from tuning.distill import read_student_manifest

        for i, n in enumerate(self.npcs):
            if n.model is None:
                continue
            if not n.model.is_dir():
                raise ConfigError(f"{path}: npcs.{i}.model: {n.model} is not a folder; train one with `eterna train "
                                  f"distill --npc {n.id} --out DIR` and point the field at DIR, or remove it")
            try:
                read_student_manifest(n.model)
            except AdapterError as e:
                raise ConfigError(f"{path}: npcs.{i}.model: {e}") from None

    def without_adapters(self) -> Cast:
        """The same cast speaking with the base model alone (every `adapter:` dropped)."""
        return self.model_copy(update={"npcs": [n.model_copy(update={"adapter": None}) for n in self.npcs]})

    def check_world(self, world: WorldConfig, path: Path | str = "cast") -> None:
        roles = world.all_roles()
        for i, n in enumerate(self.npcs):
            if n.role not in roles:
                raise ConfigError(f"{path}: npcs.{i}.role: {n.role!r} is not a role of this world "
                                  f"({', '.join(roles)}); declare it under world.roles in the config")
            if world.kinds is not None and isinstance(n.knows, list):
                bad = [k for k in n.knows if k not in world.kinds]
                if bad:
                    raise ConfigError(f"{path}: npcs.{i}.knows: lore kind {bad[0]!r} is not declared in "
                                      f"world.kinds ({', '.join(world.kinds)}); fix the cast or declare the kind")

    def get(self, npc_id: str) -> NpcSpec:
        for n in self.npcs:
            if n.id == npc_id:
                return n
        raise UnknownNpcError(f"unknown NPC {npc_id!r}; the cast has {', '.join(n.id for n in self.npcs)}")
