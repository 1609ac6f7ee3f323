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


def prompt_heads(npc: NpcSpec, route: str, world: WorldConfig, prompts: PromptsConfig,
                 guarded: bool = False) -> tuple[str, str]:
    """(the turn's prompt head, its instructions), built once: the head as `prompt_head` gives it, and the
    instructions as `instructions` gives them (the head with the guard reminder)."""
    head = system_prompt(npc, world, prompts) + "\n\n" + _fill(getattr(prompts, route), npc, world)
    instr = head + " " + _fill(prompts.guarded, npc, world)
    return (instr if guarded else head), instr


def instructions(npc: NpcSpec, route: str, world: WorldConfig, prompts: PromptsConfig) -> str:
    """The instruction text of a turn's system prompt (persona and route template, without facts or memory):
    what a reply must never recite."""
    return prompt_heads(npc, route, world, prompts)[1]


def prompt_head(npc: NpcSpec, route: str, world: WorldConfig, prompts: PromptsConfig, guarded: bool = False) -> str:
    """The start of a turn's system prompt that is the same on every turn of this character, route and guard state
    (facts and the rolling summary follow it): what a backend may keep a prompt cache of."""
    return prompt_heads(npc, route, world, prompts, guarded)[0]


def build_messages(npc: NpcSpec, route: str, evidence: list[Evidence], history: list[tuple[str, str]], text: str,
                   count_tokens: Callable[[list[dict]], int], budget: int, *, world: WorldConfig,
                   prompts: PromptsConfig, guarded: bool = False, summary: str = "",
                   report: dict | None = None, head: str | None = None) -> tuple[list[dict], list[Evidence]]:
    """Return (chat messages, evidence actually included). `budget` is the prompt's token limit; `guarded` adds a
    reminder that player text is dialogue (set when the guard flags an injection attempt); `summary` is the rolling
    summary of older turns. `report`, when given, is filled with what went in and what the budget dropped. `head`:
    the turn's `prompt_head`, when the caller built it already."""
    evidence = list(evidence)
    history = list(history)
    dropped_turns, dropped_facts = 0, []
    head = prompt_head(npc, route, world, prompts, guarded) if head is None else head
    while True:
        system = head
        if route in ("fact", "both"):
            if evidence:
                system += "\n\nFacts:\n" + "\n".join(f"[{e.chunk}] {e.title}: {e.text}" for e in evidence)
            else:
                system += "\n\n" + _fill(prompts.no_facts, npc, world)
        if summary:
            system += "\n\n" + summary
        messages = [{"role": "system", "content": system}]
        for user, reply in history:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
        messages.append({"role": "user", "content": text})
        n_tokens = count_tokens(messages)
        if n_tokens <= budget:
            if report is not None:
                report.update(facts=[e.chunk for e in evidence], turns=len(history), summary=bool(summary),
                              prompt_tokens=n_tokens, budget=budget,
                              dropped={"turns": dropped_turns, "facts": dropped_facts})
            return messages, evidence
        if history:
            history.pop(0)
            dropped_turns += 1
        elif summary:
            summary = ""
        elif len(evidence) > 1:
            dropped_facts.append(evidence.pop().chunk)
        else:
            raise InputError(f"the prompt does not fit the context budget of {budget} tokens even without history; "
                             "shorten the player text or raise generation.context_tokens")
