"""`eterna train raft`: grounded-answer examples from the world's own index (tuning/raft.py builds the items),
rendered with the engine's own fact prompt and each character's voice markers, then trained by the SFT recipe.

    manifest = train_raft(cfg, [cast.get("tome")], Path("adapters/raft-tome"), RaftRecipe(examples=300), chapter=1)
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from app.config import EternaConfig, NpcSpec
from app.grounding import Evidence, wrap_in_voice
from app.prompt import build_messages
from retrieval.fileio import atomic_write_text
from retrieval.index import LoreIndex
from retrieval.types import Chunk
from tuning.raft import RaftItem, RaftRecipe, build_raft_items


def raft_rows(cfg: EternaConfig, npcs: list[NpcSpec], items: list[RaftItem]) -> list[dict]:
    """One chat row per item, the characters taking turns: the `fact` prompt the engine builds around the item's
    evidence, then the answer (the character's "I do not know" when the evidence lacks it) in the character's
    voice markers."""
    rows = []
    for i, it in enumerate(items):
        npc = npcs[i % len(npcs)]
        evidence = [Evidence(s, c.id, c.doc, c.title, 1.0) for c, s in it.evidence]
        messages, _ = build_messages(npc, "fact", evidence, [], it.question, lambda m: 0, 1,
                                     world=cfg.world, prompts=cfg.prompts)
        m = npc.markers
        answer = it.answer if it.answer is not None else (npc.idk or cfg.world.idk)
        answer = wrap_in_voice(answer, m.opens if m else None, m.closes if m else None)
        rows.append({"messages": messages + [{"role": "assistant", "content": answer}]})
    return rows


def scoped_chunks(index: LoreIndex, npcs: list[NpcSpec], chapter: int) -> list[Chunk]:
    """The chunks at least one of the characters may know up to `chapter`."""
    return [c for c in index.chunks if any(n.scope(chapter).allows(c)
                                           for n in npcs)]


def train_raft(cfg: EternaConfig, npcs: list[NpcSpec], out: Path, recipe: RaftRecipe, *, name: str, chapter: int,
               log: bool = True) -> dict:
    """Build the examples from the live index and train a grounding adapter into `out`; returns its manifest
    (`raft`: how many items, how many "I do not know", the chapter, the index generation, the characters)."""
    from tuning.base import prepare_model
    from tuning.sft import train_sft

    index = LoreIndex.open(cfg.paths.index)
    items = build_raft_items(scoped_chunks(index, npcs, chapter), n=recipe.examples, seed=recipe.item_seed)
    rows = [json.dumps(r, ensure_ascii=False) for r in raft_rows(cfg, npcs, items)]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "raft.jsonl"
        atomic_write_text(data, "\n".join(rows) + "\n")
        base = prepare_model(cfg.models.llm, cfg.models.cache_dir)
        return train_sft(base, data, out, recipe.sft(), base_spec=cfg.models.llm, npc=name, log=log,
                         built_by="eterna train raft",
                         extra={"raft": {"items": len(items), "idk": sum(it.answer is None for it in items),
                                         "chapter": chapter, "index": index.path.name,
                                         "npcs": [n.id for n in npcs]}})
