"""The public Python API.

    engine = DialogueEngine.from_config("configs/eterna.yaml")
    reply = engine.say("keeper", "Who founded this place?", session="p1", chapter=1)
    reply.text, reply.route, reply.sources, reply.timings

One engine holds one base model, the cast's adapters, the embedder, the live index generation and the memory.
What it is built from is app/assemble.py; a turn is the pipeline in app/turn.py (guard → route → ground → compose
→ generate → check → remember), its policies in app/guard.py and app/grounding.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

from app import assemble
from app.assemble import GROUNDING_ADAPTER, WARNED, attach_cast, build_router  # noqa: F401  (re-exported)
from app.assemble import build_backend, choose_backend  # noqa: F401  (re-exported)
from app.backends import GenerationBackend
from app.backends.transformers import student_backend
from app.config import Cast, EternaConfig, NpcSpec
from app.cues import Cues
from app.grounding import EvidenceSelector, deflection, idk_line
from app.guard import SentenceGate as _SentenceGate  # noqa: F401  (re-exported: tests, benchmarks)
from app.guard import check_turn  # noqa: F401  (re-exported)
from app.guard import leaks as _leaks  # noqa: F401  (re-exported)
from app.memory import SessionMemory
from app.router import Router
from app.turn import Reply, run
from app.voice import with_derived_markers
from retrieval.index import LoreIndex, read_current

log = logging.getLogger("eterna")


class DialogueEngine:
    def __init__(self, config: EternaConfig, cast: Cast, embedder, index: LoreIndex, generator: GenerationBackend,
                 router: Router, memory: SessionMemory, cues: Cues | None = None, index_root: Path | None = None):
        # characters without `markers:` speak inside the ones their style text names (app/voice.py), however the
        # engine was built (a config, a variant's other cast)
        self.config, self.cast, self.embedder, self.index = config, with_derived_markers(cast), embedder, index
        # the index folder whose CURRENT generation the engine follows (None: keep the one it was given)
        self.index_root = Path(index_root) if index_root is not None else None
        self._swap_lock = threading.Lock()
        self._bad_generation: Path | None = None
        self.generator, self.router, self.memory = generator, router, memory
        self.cues = cues or router.cues
        self.selector = EvidenceSelector(embedder, self.cues, texts=[c.text for c in index.chunks])
        self.retriever = config.retrieval.retriever(embedder)  # dense, bm25 or hybrid (+ rerank), by config
        if config.grounding.answer_order == "reader" or config.grounding.asides == "cut":
            # a missing reader fails here, not at the first fact turn
            from app.reader import load_reader

            load_reader(config.grounding.reader)
        # adapter names on the shared model: the NPC id, or id#hash when another engine on the same model (an A/B
        # variant with another cast) already attached a different adapter under that id
        self.adapter_names, self.grounding_adapter = attach_cast(generator, config, cast)

    _warned = WARNED  # drift warnings already given in this process (app.assemble)

    def npc_backend(self, spec: NpcSpec, use_adapter: bool = True) -> GenerationBackend:
        """The backend that speaks for a character: its own checkpoint (`model:`, loaded on first use) or the shared
        base model (with the character's adapter, if any)."""
        if spec.model is not None and use_adapter:
            return student_backend(spec.model, self.config.models.dtype)
        return self.generator

    def variant(self, *, config: EternaConfig | None = None, cast: Cast | None = None,
                index_root: Path | None = None, generator: GenerationBackend | None = None) -> DialogueEngine:
        """Another engine on this one's loaded models (embedder, and base model unless `generator` gives another
        one): a different config (decoding, grounding, retrieval), cast (other adapters), index or backend. Costs
        no model load; adapters attach once."""
        config = config or self.config
        cast = cast or self.cast
        if index_root is not None:
            index = LoreIndex.open(index_root, self.embedder)
        else:
            index, index_root = self.index, self.index_root
        router = self.router if index is self.index else build_router(config, cast, self.embedder, index, self.cues)
        return DialogueEngine(config, cast, self.embedder, index, generator or self.generator, router, self.memory,
                              self.cues, index_root=index_root)

    @classmethod
    def from_config(cls, path: str | Path, *, npcs: Path | None = None, index: Path | None = None,
                    llm: str | None = None, adapters: bool = True) -> DialogueEngine:
        """Build everything a config names (app.assemble). Keyword overrides mirror the CLI flags."""
        return assemble.from_config(path, npcs=npcs, index=index, llm=llm, adapters=adapters, engine=cls)

    @classmethod
    def from_settings(cls, config: EternaConfig, *, npcs: Path | None = None, index: Path | None = None,
                      llm: str | None = None, adapters: bool = True) -> DialogueEngine:
        """Build everything a loaded config names (app.assemble). `adapters=False` loads none of the cast's
        adapters: the base model speaks for everyone."""
        return assemble.from_settings(config, npcs=npcs, index=index, llm=llm, adapters=adapters, engine=cls)

    def idk_line(self, spec: NpcSpec) -> str:
        """The character's in-voice "I do not know" (app.grounding)."""
        return idk_line(spec, self.config.world)

    def deflection(self, spec: NpcSpec) -> str:
        """The character's in-voice refusal to step out of the fiction (app.grounding)."""
        return deflection(spec, self.config.world)

    def say(self, npc: str, text: str, *, session: str = "default", chapter: int = 1, state: dict | None = None,
            use_adapter: bool = True, remember: bool = True, route: str | None = None, tools=None) -> Reply:
        """One reply. `state`: the game's state, a JSON object (documents whose `requires` it fails are hidden, as
        later chapters are; None: the empty state). `use_adapter=False` speaks with the bare base model (an A/B
        variant); `remember=False` leaves the session's memory as it was; `route` forces a route instead of asking
        the router (fact: always retrieve; style: never); `tools` (action names) narrows the actions the reply may
        carry (`Reply.actions`)."""
        for item in run(self, npc, text, session=session, chapter=chapter, use_adapter=use_adapter, keep=remember,
                        route_as=route, state=state, tools=tools):
            if isinstance(item, Reply):
                return item
        raise RuntimeError("a turn ended without a reply")  # unreachable

    def stream(self, npc: str, text: str, *, session: str = "default", chapter: int = 1, state: dict | None = None,
               use_adapter: bool = True, remember: bool = True, route: str | None = None,
               tools=None) -> Iterator[str | Reply]:
        """Yield the reply's text as it is decoded, then the final `Reply`. When the support check replaces a
        generated reply, the final `Reply.text` is what counts (a client shows it in place of the streamed text;
        `Reply.grounding["answer"]` says why)."""
        yield from run(self, npc, text, session=session, chapter=chapter, use_adapter=use_adapter, stream=True,
                       keep=remember, route_as=route, state=state, tools=tools)

    def scene(self, scene_id: str, npcs: list[str], director: str | None = None, session: str = "default",
              **options):
        """A scene with several characters (app/scenes.py): `scene.say(text, to=..., chapter=..., state=...)`.
        `options`: reactions (1), policy ("knowledge"), reaction_tokens, transcript_lines, reaction_lines, store
        (where the transcript is kept; default: the session store)."""
        from app.scenes import Scene

        return Scene(self, scene_id, npcs, director=director, session=session, **options)

    def refresh_index(self) -> bool:
        """Pick up a new live index generation (after `eterna index rebuild` or `rollback`) between turns.
        Returns True when the generation changed. A failing new generation leaves the current one serving."""
        if self.index_root is None:
            return False
        try:
            live = read_current(self.index_root)
        except Exception:
            return False
        if live == self.index.path:
            return False
        with self._swap_lock:
            if live == self.index.path:
                return False
            if live == self._bad_generation:
                return False
            try:
                lore = LoreIndex.open(self.index_root, self.embedder)
            except Exception as e:  # a broken or foreign generation: keep serving the one we have
                log.warning("index generation %s not loaded (%s); still serving %s", live.name, e,
                            self.index.path.name)
                self._bad_generation = live
                return False
            selector = EvidenceSelector(self.embedder, self.cues, texts=[c.text for c in lore.chunks])
            self.router.lore = lore
            self.index, self.selector = lore, selector
        return True
