"""Composition: what an engine is built from.

A config names a base model (and the backend that runs it), an embedder, a live index, a cast with its adapters,
a router and a memory; this module builds them and hands them to `DialogueEngine`. Attaching the cast's adapters to
the shared model and checking that each still fits its character's system prompt (voice drift) happen here too,
however an engine is built (a config, or `DialogueEngine.variant`).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from app.actions import router_utterances
from app.backends import GenerationBackend, make_backend
from app.config import Cast, EternaConfig, NpcSpec
from app.cues import Cues
from app.guard import injection_flags
from app.memory import SessionMemory, open_store
from app.prompt import system_prompt
from app.router import Router, load_seeds
from app.router_data import synthesise
from retrieval.embeddings import SentenceTransformerEmbedder
from retrieval.errors import AdapterError
from retrieval.index import LoreIndex
from tuning.adapters import manifest_problems, read_adapter_manifest
from tuning.base import model_gguf, prepare_model

log = logging.getLogger("eterna")

GROUNDING_ADAPTER = "grounding"  # adapter name of `grounding.adapter`; cast ids cannot clash (no such id allowed)
PERSONA_ADAPTER = "persona#shared"  # adapter name of `models.persona_adapter` ('#' is in no cast id)

WARNED: set[tuple[Path, str]] = set()  # drift warnings already given in this process


def choose_backend(config: EternaConfig, llm: str | None = None) -> tuple[str, dict, dict]:
    """(backend name, its extra arguments, why) for `models.backend`. `auto` takes llama.cpp when it is installed
    and the model has a GGUF, else transformers. llama.cpp is taken only after the startup probe (app/probe.py)
    ran it in a child process: a configuration that dies there falls to the next, and none to transformers."""
    m = config.models
    spec = llm or m.llm
    gguf = model_gguf(spec, m.llamacpp.gguf if llm is None else None)
    name, why = m.backend, f"models.backend: {m.backend}"
    if name == "auto":
        from app.backends.llamacpp import available

        name = "llamacpp" if gguf is not None and gguf.is_file() and available() else "transformers"
        why = "auto: " + ("llama.cpp is installed and the model has a GGUF" if name == "llamacpp" else
                          "llama.cpp is not installed or the model has no GGUF")
    choice = {"configured": m.backend, "backend": name, "reason": why}
    if name != "llamacpp" or gguf is None:
        return name, {}, choice
    from app.probe import probe

    result = probe(gguf, cache_dir=m.cache_dir, timeout_s=m.llamacpp.probe_timeout_s)
    choice.update(backend=result.backend, reason=result.reason, probe=result.to_json())
    return result.backend, (result.config if result.ok else {}), choice


def build_backend(config: EternaConfig, llm: str | None = None) -> GenerationBackend:
    """The generation backend `choose_backend` picks, with `.choice` saying which and why (healthz, doctor)."""
    m = config.models
    spec = llm or m.llm
    model_dir = prepare_model(spec, m.cache_dir)
    gguf = model_gguf(spec, m.llamacpp.gguf if llm is None else None)
    name, extra, choice = choose_backend(config, llm)
    gen = make_backend(name, **{**m.options(name), "model_dir": model_dir, "gguf": gguf, "cache_dir": m.cache_dir,
                                "dtype": m.dtype, "n_ctx": config.generation.context_tokens, "config": config,
                                **extra})
    gen.choice = choice
    return gen


def build_router(config: EternaConfig, cast: Cast, embedder, lore: LoreIndex, cues: Cues) -> Router:
    """The world's router: synthesised utterances from the index's lore and the cast, the cast's action examples,
    plus any seeds."""
    docs: dict[str, tuple[str, list[str]]] = {}
    for c in lore.chunks:
        docs.setdefault(c.doc, (c.title, []))[1].append(c.text)
    examples = synthesise([(t, " ".join(x)) for t, x in docs.values()], [n.name for n in cast.npcs], cues)
    examples += router_utterances(cast.npcs)  # the `action` label: the actions' examples are its data
    if config.paths.router_seeds is not None:
        examples += load_seeds(config.paths.router_seeds)
    return Router(embedder, cues, examples, lore, lore_threshold=config.router.lore_threshold,
                  offworld_min=config.router.offworld_min,
                  cache_dir=config.models.cache_dir / "router", retriever=config.retrieval.retriever(embedder),
                  k=config.retrieval.k)


def check_voice(config: EternaConfig, npc: NpcSpec) -> None:
    """An adapter learnt its voice under the system prompt its manifest records; a changed persona, style or
    prompt template detunes it silently. Warn loudly (or raise, with models.adapter_drift: error)."""
    system = system_prompt(npc, config.world, config.prompts)
    problems = manifest_problems(read_adapter_manifest(npc.adapter), npc.adapter, npc=npc.id, system=system)
    if not problems:
        return
    if config.models.adapter_drift == "error":
        raise AdapterError(f"{problems[0]} (models.adapter_drift is `error`; `warn` loads it anyway)")
    if (npc.adapter, system) not in WARNED:
        WARNED.add((npc.adapter, system))
        log.warning("warning: %s", problems[0])


def attach(generator: GenerationBackend, name: str, path: Path) -> str:
    """Attach an adapter to the shared model under `name`, or `name#hash` when another engine on the same model
    (an A/B variant with another cast) already attached a different adapter under that name. Returns the name."""
    have = generator.adapters.get(name)
    if have is not None and Path(have) != Path(path):
        name = f"{name}#{hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:8]}"
    generator.add_adapter(name, path)
    return name


def attach_cast(generator: GenerationBackend, config: EternaConfig, cast: Cast) -> tuple[dict[str, str], str | None]:
    """(the cast's adapter names by NPC id, the grounding adapter's name or None), each adapter checked for voice
    drift and attached to `generator`. A character with neither an adapter nor a model of its own speaks with
    `models.persona_adapter` when one is set."""
    names: dict[str, str] = {}
    shared = config.models.persona_adapter
    for npc in cast.npcs:
        if npc.model is not None:  # a `model:` speaks for the character instead
            continue
        if npc.adapter is not None:
            check_voice(config, npc)
            names[npc.id] = attach(generator, npc.id, npc.adapter)
        elif shared is not None:
            names[npc.id] = attach(generator, PERSONA_ADAPTER, shared)
    grounding = attach(generator, GROUNDING_ADAPTER, config.grounding.adapter) \
        if config.grounding.adapter is not None else None
    return names, grounding


def from_settings(config: EternaConfig, *, npcs: Path | None = None, index: Path | None = None,
                  llm: str | None = None, adapters: bool = True, engine: type | None = None):
    """Build everything a config names into an engine (`engine`: the class, DialogueEngine by default).
    `adapters=False` loads none of the cast's adapters: the base model speaks for everyone (another base model than
    the adapters were trained on, or a baseline)."""
    if engine is None:
        from app.dialogue import DialogueEngine as engine
    cast = Cast.load(npcs or config.paths.npcs, config.world)
    if not adapters:
        cast = cast.without_adapters()
        config = config.model_copy(update={"models": config.models.model_copy(update={"persona_adapter": None})})
    if config.models.backend == "openai" and config.models.remote is not None:
        from app.backends.openai import check_cast_adapters

        check_cast_adapters(config.models.remote, [n.id for n in cast.npcs])
    cues = Cues.load(config.world.cues)
    store = open_store(config.memory, config.paths.sessions)  # first: an unreachable store fails before models load
    embedder = SentenceTransformerEmbedder(config.models.embedder, dtype=config.models.embedder_dtype)
    lore = LoreIndex.open(index or config.paths.index, embedder)
    generator = build_backend(config, llm)
    router = build_router(config, cast, embedder, lore, cues)
    memory = SessionMemory(config.memory.turns, store, config.memory.summary_chars,
                           flagged=lambda t: bool(injection_flags(t)), live_sessions=config.memory.live_sessions,
                           summarise_every=config.memory.summarise_every)
    return engine(config, cast, embedder, lore, generator, router, memory, cues, index_root=index or config.paths.index)


def from_config(path: str | Path, *, npcs: Path | None = None, index: Path | None = None, llm: str | None = None,
                adapters: bool = True, engine: type | None = None):
    """Build everything a config file names. Keyword overrides mirror the CLI flags."""
    return from_settings(EternaConfig.load(Path(path)), npcs=npcs, index=index, llm=llm, adapters=adapters,
                         engine=engine)
