"""Typed configuration, validated at the edge: YAML -> pydantic models -> constructors. Unknown keys are errors.

Relative paths in a config file are resolved against that file's folder, so a config works from any cwd.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from retrieval.errors import ConfigError, UnknownNpcError
from retrieval.types import LORE_KINDS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelsConfig(_Strict):
    llm: str = Field("builtin:smollm2-135m-instruct", description="builtin id, local checkpoint dir or cached hub id")
    embedder: str = Field("builtin:all-minilm-l6-v2", description="builtin id, local folder or cached hub id")
    dtype: Literal["float32", "bfloat16"] = Field("bfloat16", description="generation dtype (training uses fp32)")
    cache_dir: Path = Field(Path("../.eterna/models"), description="where converted checkpoints are cached")


class PathsConfig(_Strict):
    corpus: Path = Path("../corpora/lore")
    index: Path = Path("../.eterna/index")
    npcs: Path = Path("npcs.yaml")
    router_seeds: Path = Path("../corpora/router/seeds.jsonl")
    adapters: Path = Field(Path("../.eterna/adapters"), description="default output of `eterna train sft`")
    sessions: Path | None = Field(Path("../.eterna/sessions"), description="session memory on disk (null: in memory)")


class RetrievalConfig(_Strict):
    k: int = Field(4, ge=1, le=50)
    min_score: float = Field(0.25, ge=-1, le=1, description="hits below this cosine are not shown to the model")
    chunk_words: int = Field(120, ge=16)
    overlap_words: int = Field(25, ge=0)


class GenerationConfig(_Strict):
    max_new_tokens: int = Field(96, ge=1, le=2048)
    temperature: float = Field(0.0, ge=0, description="0 = greedy")
    top_p: float = Field(0.9, gt=0, le=1)
    repetition_penalty: float = Field(1.1, ge=1)
    context_tokens: int = Field(2048, ge=256, description="prompt + reply budget")
    seed: int = 0


class GuardConfig(_Strict):
    max_input_chars: int = Field(2000, ge=1)


class MemoryConfig(_Strict):
    turns: int = Field(6, ge=0, description="recent exchanges per (session, NPC) kept in the prompt")


class RouterConfig(_Strict):
    neighbours: int = Field(7, ge=1)
    lore_threshold: float = Field(0.45, description="top lore cosine above which a question is about the world")


class EternaConfig(_Strict):
    models: ModelsConfig = ModelsConfig()
    paths: PathsConfig = PathsConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    generation: GenerationConfig = GenerationConfig()
    guard: GuardConfig = GuardConfig()
    memory: MemoryConfig = MemoryConfig()
    router: RouterConfig = RouterConfig()

    @classmethod
    def load(cls, path: Path) -> EternaConfig:
        path = Path(path)
        cfg = _validate(cls, _read_yaml(path), path)
        return cfg.resolved(path.parent)

    def resolved(self, base: Path) -> EternaConfig:
        """Copy with every relative path made absolute against `base`."""
        def fix(p: Path | None) -> Path | None:
            return None if p is None else (p if p.is_absolute() else (base / p).resolve())
        paths = self.paths.model_copy(update={k: fix(getattr(self.paths, k)) for k in PathsConfig.model_fields})
        models = self.models.model_copy(update={"cache_dir": fix(self.models.cache_dir)})
        return self.model_copy(update={"paths": paths, "models": models})


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
    role: Literal["director", "npc", "book"]
    persona: str = Field(min_length=1)
    style: str = Field(min_length=1)
    knows: Literal["all"] | list[str]
    adapter: Path | None = None
    markers: Markers | None = None

    @field_validator("knows")
    @classmethod
    def _kinds(cls, v):
        if isinstance(v, list):
            bad = [k for k in v if k not in LORE_KINDS]
            if bad:
                raise ValueError(f"unknown lore kind {bad[0]!r}; use 'all' or kinds from {', '.join(LORE_KINDS)}")
        return v

    def kinds(self) -> frozenset[str] | None:
        return None if self.knows == "all" else frozenset(self.knows)


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
    def load(cls, path: Path) -> Cast:
        path = Path(path)
        cast = _validate(cls, _read_yaml(path), path)
        for n in cast.npcs:
            if n.adapter is not None and not n.adapter.is_absolute():
                n.adapter = (path.parent / n.adapter).resolve()
        return cast

    def get(self, npc_id: str) -> NpcSpec:
        for n in self.npcs:
            if n.id == npc_id:
                return n
        raise UnknownNpcError(f"unknown NPC {npc_id!r}; the cast has {', '.join(n.id for n in self.npcs)}")


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _format_validation(path: Path, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key (check spelling; see the README's configuration section)"
    return f"{path}: {loc}: {msg}"


def _validate(cls, data: dict, path: Path):
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation(path, e)) from None
