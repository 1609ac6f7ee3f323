"""Prompt assembly: persona + instructions + evidence (with source ids) + recent turns + the player's line.

Every word of it comes from config (`world:` and `prompts:`), so a new world needs no code. Kept inside the
context budget: the oldest turns go first, then the lowest-ranked evidence.
"""

from __future__ import annotations

from collections.abc import Callable

from app.config import NpcSpec, PromptsConfig, WorldConfig
from app.grounding import Evidence
from retrieval.errors import InputError


def _fill(template: str, npc: NpcSpec | None, world: WorldConfig) -> str:
    values = {"world": world.name, "setting": world.setting.strip() or world.name, "name": "", "role": "",
              "persona": "", "style": ""}
    if npc is not None:
        values.update(name=npc.name, role=world.all_roles().get(npc.role, npc.role), persona=npc.persona,
                      style=npc.style)
    return template.format(**values)


def system_prompt(npc: NpcSpec, world: WorldConfig, prompts: PromptsConfig | None = None) -> str:
    """The persona turn shared by training (tuning) and generation, so adapters see what they learned."""
    return _fill((prompts or PromptsConfig()).system, npc, world)


def build_messages(npc: NpcSpec, route: str, evidence: list[Evidence], history: list[tuple[str, str]], text: str,
                   count_tokens: Callable[[list[dict]], int], budget: int, *, world: WorldConfig,
                   prompts: PromptsConfig, guarded: bool = False) -> tuple[list[dict], list[Evidence]]:
    """Return (chat messages, evidence actually included). `budget` is the prompt's token limit; `guarded` adds a
    reminder that player text is dialogue (set when the guard flags an injection attempt)."""
    evidence = list(evidence)
    history = list(history)
    head = system_prompt(npc, world, prompts) + "\n\n" + _fill(getattr(prompts, route), npc, world)
    if guarded:
        head += " " + _fill(prompts.guarded, npc, world)
    while True:
        system = head
        if route in ("fact", "both"):
            if evidence:
                system += "\n\nFacts:\n" + "\n".join(f"[{e.chunk}] {e.title}: {e.text}" for e in evidence)
            else:
                system += "\n\n" + _fill(prompts.no_facts, npc, world)
        messages = [{"role": "system", "content": system}]
        for user, reply in history:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
        messages.append({"role": "user", "content": text})
        if count_tokens(messages) <= budget:
            return messages, evidence
        if history:
            history.pop(0)
        elif len(evidence) > 1:
            evidence.pop()
        else:
            raise InputError(f"the prompt does not fit the context budget of {budget} tokens even without history; "
                             "shorten the player text or raise generation.context_tokens")
