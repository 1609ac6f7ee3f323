"""Actions a character can take: their spec in the cast file, its checks, and the in-voice lines that answer them.

A cast entry may declare `actions:`, each with a `name`, a `description`, `params` (a JSON Schema for the arguments,
checked with `jsonschema`'s `check_schema`), an optional `requires` (a state gate, `retrieval/gates.py`), `examples`
(lines a player might say to ask for it; the detector and the router learn from them) and optional `replies`
(`accept` / `refuse` / `ask` templates with `{param}` slots; without them the description makes the line). A name
clash within a character, an invalid schema or a bad expression is a ConfigError naming the cast file and line.

What a turn does with them is `app/action_turn.py`; taking arguments from the words is `app/action_args.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import Field

from app.config import _Strict
from app.grounding import in_voice
from retrieval.errors import ConfigError
from retrieval.gates import GateError, State, compile_gate

if TYPE_CHECKING:
    from app.cast import NpcSpec

NAME = r"^[a-zA-Z_][a-zA-Z0-9_-]{0,63}$"  # what OpenAI accepts as a function name


class ActionReplies(_Strict):
    accept: str | None = Field(None, description="the character agrees; `{param}` slots take the arguments")
    refuse: str | None = Field(None, description="the state forbids it (the gate is shut)")
    ask: str | None = Field(None, description="a required argument is missing; `{missing}` names it")


class ActionSpec(_Strict):
    name: str = Field(pattern=NAME, description="the action's name, as the game and OpenAI tool calls see it")
    description: str = Field(min_length=1, description="what the character does, in the imperative")
    params: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}},
                                   description="JSON Schema (Draft 2020-12) of the arguments, an object")
    requires: str | None = Field(None, description="a state gate (the `requires:` language); shut: the character "
                                                   "refuses")
    examples: list[str] = Field(default_factory=list, description="lines a player might say to ask for it")
    replies: ActionReplies | None = None

    def allowed(self, state: State) -> bool:
        return self.requires is None or compile_gate(self.requires).test(state)

    def tool(self) -> dict:
        """The action as an OpenAI tool (`{"type": "function", "function": {...}}`)."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.params}}


def yaml_line(text: str, keys: list) -> int | None:
    """The 1-based line of the node at `keys` (mapping keys and list indexes) in a YAML text; None if absent."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    for k in keys:
        if isinstance(node, yaml.MappingNode):
            node = next((v for kn, v in node.value if kn.value == k), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(k, int) and k < len(node.value):
            node = node.value[k]
        else:
            node = None
        if node is None:
            return None
    return node.start_mark.line + 1


def check_actions(npcs: list[NpcSpec], path: Path | str) -> None:
    """Every character's actions: unique names, valid JSON Schemas for an object, compiling gates. A ConfigError
    names the cast file, the line and the fix."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""

    def fail(i: int, j: int, key: str | None, msg: str) -> None:
        keys = ["npcs", i, "actions", j] + ([key] if key else [])
        line = yaml_line(text, keys) or yaml_line(text, keys[:4])
        where = f"{path}:{line}" if line else str(path)
        raise ConfigError(f"{where}: npcs.{i}.actions.{j}{'.' + key if key else ''}: {msg}")

    for i, npc in enumerate(npcs):
        seen: dict[str, int] = {}
        for j, a in enumerate(npc.actions):
            if a.name in seen:
                fail(i, j, "name", f"action {a.name!r} is declared twice for {npc.id} (first as actions.{seen[a.name]})"
                                   "; rename one")
            seen[a.name] = j
            try:
                Draft202012Validator.check_schema(a.params)
            except SchemaError as e:
                fail(i, j, "params", f"not a valid JSON Schema: {e.message}; see https://json-schema.org")
            if a.params.get("type") != "object":
                fail(i, j, "params", "the schema of the arguments must be `type: object` with `properties`")
            bad = [r for r in a.params.get("required") or [] if r not in (a.params.get("properties") or {})]
            if bad:
                fail(i, j, "params", f"required parameter {bad[0]!r} is not in properties")
            if a.requires is not None:
                try:
                    compile_gate(a.requires)
                except GateError as e:
                    fail(i, j, "requires", f"{e}; see docs/worlds.md, 'State-gated lore'")


def action_problems(npcs: list[NpcSpec], schema: dict | None) -> list[str]:
    """Warnings for `eterna validate`: names a gate reads that the state schema lacks, comparisons across types,
    actions without examples (the detector and the router learn from them)."""
    out = []
    for npc in npcs:
        for a in npc.actions:
            where = f"{npc.id}.{a.name}"
            if a.requires is not None:
                out += [f"{where}: requires: {p}" for p in compile_gate(a.requires).problems(schema)]
            if not a.examples:
                out.append(f"{where}: no examples; the action is found only by its description")
    return out


def router_utterances(npcs: list[NpcSpec]) -> list[tuple[str, str]]:
    """The router's `action` utterances: every declared action's examples, as said and in lower case without
    punctuation (players type both)."""
    out: list[tuple[str, str]] = []
    for npc in npcs:
        for a in npc.actions:
            for ex in a.examples:
                out += [(ex, "action"), (re.sub(r"[^\w\s']", "", ex).lower().strip(), "action")]
    return list(dict.fromkeys(x for x in out if x[0]))


class _Slots(dict):
    def __missing__(self, key: str) -> str:
        return ""


def _doing(description: str) -> str:
    """The description as something the character says it does: "Take the player across" → "take you across"."""
    d = description.strip().rstrip(".")
    d = re.sub(r"\bthe player's\b", "your", d, flags=re.I)
    d = re.sub(r"\bthe player\b", "you", d, flags=re.I)
    return d[:1].lower() + d[1:]


_WH = re.compile(r"^(?:what|which|who|whom|whose|how|where|when|why|whether)\b", re.I)


def _param_label(params: dict, name: str) -> str:
    """A missing parameter as a noun phrase for "tell me the {missing}": its description's head up to the first
    colon, comma or bracket ("name of the person adopting"), or, where the description is a question ("what kind
    of animal the pet is: ...", "how many nights the pet stays") or long, the parameter's own name ("species",
    "number of nights"); an enum's values follow unless the phrase already says them."""
    schema = (params.get("properties") or {}).get(name) or {}
    head = re.split(r"\s*[:;(]|,\s", schema.get("description") or "", maxsplit=1)[0].strip()
    label = re.sub(r"^(the|a|an)\s+", "", head, flags=re.I)
    if not label or _WH.match(label) or len(label.split()) > 8:
        label = name.replace("_", " ")
        if schema.get("type") in ("integer", "number") and label not in ("count", "number", "amount", "quantity"):
            label = f"number of {label}"  # "number of nights", "number of people", "number of km"
    options = [str(o) for o in schema.get("enum") or []]
    if options and not all(o.lower() in label.lower() for o in options[:8]):
        label += " (" + ", ".join(options[:8]) + ")"
    return label


@dataclass
class Outcome:
    """What a turn does about one action: `accepted` (with `args`), `refused` (gate shut) or `incomplete`."""

    action: ActionSpec
    status: str
    args: dict = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    score: float = 0.0

    @property
    def name(self) -> str:
        return self.action.name

    def flag(self) -> str | None:
        return {"refused": f"action_refused:{self.name}", "incomplete": f"action_incomplete:{self.name}"}.get(
            self.status)

    def calls(self) -> list[dict]:
        return [{"name": self.name, "args": dict(self.args)}] if self.status == "accepted" else []

    def line(self) -> str:
        """What the character says, without its voice markers."""
        a, r = self.action, self.action.replies or ActionReplies()
        slots = _Slots({k: v for k, v in self.args.items()})
        if self.status == "accepted":
            if r.accept:
                return r.accept.format_map(slots)
            said = ", ".join(f"{v}" for v in self.args.values())
            return f"Very well, I will {_doing(a.description)}" + (f": {said}." if said else ".")
        if self.status == "refused":
            return r.refuse.format_map(slots) if r.refuse else f"No. I cannot {_doing(a.description)}, not now."
        label = " and ".join(_param_label(a.params, m) for m in self.missing)
        slots["missing"] = label
        return r.ask.format_map(slots) if r.ask else f"I can {_doing(a.description)}, but tell me the {label} first."

    def text(self, spec: NpcSpec) -> str:
        return in_voice(spec, self.line())


def with_answer(spec: NpcSpec, outcome: Outcome, answer: str) -> str:
    """The action's line and a grounded answer as one reply, inside the character's markers once."""
    m = spec.markers
    inner = answer.strip()
    for o in (m.opens if m else []):
        if inner.startswith(o):
            inner = inner[len(o):].strip()
            break
    inner = inner[:1].upper() + inner[1:]  # the answer starts a sentence after the action's line
    return in_voice(spec, f"{outcome.line()} {inner}")
