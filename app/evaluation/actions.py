"""`eterna eval actions`: does a character do what the player asks, refuse what the state forbids, ask for what is
missing, and do nothing otherwise?

Lines are `{"npc", "text", "state", "expect"}` with `expect` one of `{"name", "args"}` (the action and its
arguments), `null` (no action), `{"refused": NAME}` or `{"incomplete": NAME}`. Figures:
- precision: returned actions whose name is the expected one, over all returned actions;
- recall: expected actions returned with the right name, over all expected actions;
- args exact: expected actions returned with the right name and exactly the expected arguments (free strings
  compared case-, whitespace- and punctuation-insensitively), over all expected actions (a miss counts against it);
- correct refusals / asks: lines expecting a refusal (ask) that got no action and the flag `action_refused:NAME`
  (`action_incomplete:NAME`);
- a confusion by action (rows: what was expected; columns: what the turn did), and p50 turn times.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.action_args import norm
from retrieval.errors import CorpusError
from retrieval.fileio import read_jsonl
from retrieval.gates import State


def load_action_items(path: Path) -> list[dict]:
    items = []
    for n, obj in read_jsonl(path, ("npc", "text", "expect")):
        e = obj["expect"]
        ok = e is None or (isinstance(e, dict) and (
            (set(e) == {"name", "args"} and isinstance(e["args"], dict)) or set(e) in ({"refused"}, {"incomplete"})))
        if not ok:
            raise CorpusError(f"{path}:{n}: expect must be {{\"name\", \"args\"}}, null, {{\"refused\": NAME}} or "
                              f"{{\"incomplete\": NAME}}, got {e!r}")
        if not isinstance(obj["text"], str) or not obj["text"].strip():
            raise CorpusError(f"{path}:{n}: text must be a non-empty string")
        try:
            State.of(obj.get("state"), field=f"{path}:{n}: state")
        except Exception as err:
            raise CorpusError(str(err)) from None
        items.append(obj)
    if not items:
        raise CorpusError(f"{path}: no lines")
    return items


def _same(a: object, b: object) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return norm(a) == norm(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def args_match(got: dict, want: dict) -> bool:
    return set(got) == set(want) and all(_same(got[k], want[k]) for k in want)


def outcome_of(reply) -> str:
    """What a turn did, as a confusion column: the action's name, refused:NAME, incomplete:NAME or none."""
    if reply.actions:
        return reply.actions[0]["name"]
    for f in reply.flags:
        if f.startswith("action_refused:"):
            return "refused:" + f.split(":", 1)[1]
        if f.startswith("action_incomplete:"):
            return "incomplete:" + f.split(":", 1)[1]
    return "none"


def expected_of(e: dict | None) -> str:
    if e is None:
        return "none"
    if "refused" in e:
        return f"refused:{e['refused']}"
    if "incomplete" in e:
        return f"incomplete:{e['incomplete']}"
    return e["name"]


def actions_report(engine, items: list[dict], *, keep_items: bool = False, progress=None) -> dict:
    rows = []
    for i, it in enumerate(items):
        reply = engine.say(it["npc"], it["text"], session=f"eval-actions-{i}", chapter=it.get("chapter", 1),
                           state=it.get("state"), remember=False)
        rows.append((it, reply))
        if progress:
            progress(i + 1, len(items))
    expected_actions = [(it, r) for it, r in rows if it["expect"] and "name" in it["expect"]]
    returned = [(it, r) for it, r in rows if r.actions]
    right_name = [(it, r) for it, r in returned if it["expect"] and it["expect"].get("name") == r.actions[0]["name"]]
    exact = [(it, r) for it, r in right_name if args_match(r.actions[0]["args"], it["expect"]["args"])]
    refusals = [(it, r) for it, r in rows if it["expect"] and "refused" in it["expect"]]
    asks = [(it, r) for it, r in rows if it["expect"] and "incomplete" in it["expect"]]
    confusion: dict[str, dict[str, int]] = {}
    for it, r in rows:
        row = confusion.setdefault(expected_of(it["expect"]), {})
        got = outcome_of(r)
        row[got] = row.get(got, 0) + 1

    def rate(good: int, n: int) -> float | None:
        return round(good / n, 4) if n else None

    def ms(pairs) -> float | None:
        t = [r.timings.get("total_ms", 0.0) for _, r in pairs]
        return round(float(np.median(t)), 1) if t else None

    report = {
        "n": len(rows), "n_expected_actions": len(expected_actions), "n_returned_actions": len(returned),
        "precision": rate(len(right_name), len(returned)),
        "recall": rate(len(right_name), len(expected_actions)),
        "args_exact": rate(len(exact), len(expected_actions)),
        "correct_refusals": rate(sum(outcome_of(r) == expected_of(it["expect"]) for it, r in refusals),
                                 len(refusals)),
        "n_refusals": len(refusals),
        "correct_asks": rate(sum(outcome_of(r) == expected_of(it["expect"]) for it, r in asks), len(asks)),
        "n_asks": len(asks),
        "no_action_correct": rate(sum(outcome_of(r) == "none" for it, r in rows if it["expect"] is None),
                                  sum(it["expect"] is None for it, _ in rows)),
        "p50_action_turn_ms": ms(expected_actions + refusals + asks),
        "p50_turn_ms": ms(rows),
        "confusion": confusion,
    }
    errors = [{"id": it.get("id"), "npc": it["npc"], "text": it["text"], "expect": it["expect"],
               "got": {"outcome": outcome_of(r), "actions": r.actions, "route": r.route, "reason": r.reason}}
              for it, r in rows if outcome_of(r) != expected_of(it["expect"]) or
              (r.actions and it["expect"] and "args" in it["expect"]
               and not args_match(r.actions[0]["args"], it["expect"]["args"]))]
    report["errors"] = errors
    if keep_items:
        report["items"] = [{"id": it.get("id"), "npc": it["npc"], "text": it["text"], "expect": it["expect"],
                            "reply": r.text, "actions": r.actions, "flags": r.flags, "route": r.route,
                            "ms": r.timings.get("total_ms")} for it, r in rows]
    return report
