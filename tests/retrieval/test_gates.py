"""The `requires` expression language (retrieval/gates.py): a property test against an independent evaluator written
here from the pinned semantics, malformed expressions, the state's input checks, and validate's warnings."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrieval.corpus import parse_document
from retrieval.errors import CorpusError, InputError
from retrieval.gates import EMPTY, GateError, State, compile_gate, gate_open

NAMES = ["a", "a.b", "a.c", "b", "b.x.y", "c.d"]

# -- an independent evaluator over the test's own expression trees ---------------------------------------------------


def ref_get(state: dict, name: str):
    node = state
    for part in name.split("."):
        if type(node) is not dict or part not in node:
            return None
        node = node[part]
    return node


def ref_type(v) -> str:
    if v is None:
        return "null"
    if v is True or v is False:
        return "bool"
    if type(v) in (int, float):
        return "number"
    if type(v) is str:
        return "string"
    if type(v) is list:
        return "list"
    return "object"


def ref_truth(v) -> bool:
    t = ref_type(v)
    if t == "null":
        return False
    if t == "object":
        return len(v) > 0
    return {"bool": v is True, "number": v != 0, "string": v != ""}[t]


def ref_compare(op: str, left, right) -> bool:
    tl, tr = ref_type(left), ref_type(right)
    if "null" in (tl, tr):
        return False
    if op in ("in", "not in"):
        if tr == "list":
            hit = any(ref_type(x) == tl and x == left for x in right)
        elif tr == "string" and tl == "string":
            hit = right.find(left) >= 0
        elif tr == "object" and tl == "string":
            hit = ref_type(right.get(left)) != "null"
        else:
            return False
        return hit if op == "in" else not hit
    if tl != tr:
        return False
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    if tl not in ("number", "string"):
        return False
    return {"<": lambda: left < right, "<=": lambda: left <= right, ">": lambda: left > right,
            ">=": lambda: left >= right}[op]()


def ref_value(expr, state):
    tag = expr[0]
    if tag == "name":
        return ref_get(state, expr[1])
    if tag == "lit":
        return expr[1]
    if tag == "list":
        return list(expr[1])
    return ref_eval(expr, state)


def ref_eval(expr, state) -> bool:
    tag = expr[0]
    if tag == "and":
        return ref_eval(expr[1], state) and ref_eval(expr[2], state)
    if tag == "or":
        return ref_eval(expr[1], state) or ref_eval(expr[2], state)
    if tag == "not":
        return not ref_eval(expr[1], state)
    if tag == "cmp":
        return ref_compare(expr[1], ref_value(expr[2], state), ref_value(expr[3], state))
    return ref_truth(ref_value(expr, state))


def render(expr, spell) -> str:
    tag = expr[0]
    if tag == "name":
        return expr[1]
    if tag == "lit":
        v = expr[1]
        if v is None or isinstance(v, bool):
            return spell(v)
        return json.dumps(v) if isinstance(v, str) else repr(v)
    if tag == "list":
        return "[" + ", ".join(render(("lit", x), spell) for x in expr[1]) + "]"
    if tag in ("and", "or"):
        return f"({render(expr[1], spell)}) {tag} ({render(expr[2], spell)})"
    if tag == "not":
        return f"not ({render(expr[1], spell)})"
    return f"{render(expr[2], spell)} {expr[1]} {render(expr[3], spell)}"


# -- strategies -----------------------------------------------------------------------------------------------------

leaf = st.one_of(st.none(), st.booleans(), st.integers(-3, 3),
                 st.floats(-3, 3, allow_nan=False).map(lambda f: round(f, 1)),
                 st.sampled_from(["", "x", "xy", "y", "amber", "night"]))
literal = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.5, -1.5, 2.0]),
                    st.sampled_from(["", "x", "xy", "y", "amber", "night"]))
atom = st.one_of(st.sampled_from(NAMES).map(lambda n: ("name", n)), literal.map(lambda v: ("lit", v)))
ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "not in"])


@st.composite
def comparison(draw):
    op = draw(ops)
    right = draw(st.one_of(atom, st.lists(literal, max_size=3).map(lambda xs: ("list", tuple(xs)))) if op in
                 ("in", "not in") else atom)
    return ("cmp", op, draw(atom), right)


expressions = st.recursive(
    st.one_of(atom, comparison()),
    lambda sub: st.one_of(st.tuples(st.just("and"), sub, sub), st.tuples(st.just("or"), sub, sub),
                          st.tuples(st.just("not"), sub)), max_leaves=8)

states = st.recursive(st.dictionaries(st.sampled_from(["b", "c", "x", "y"]), leaf, max_size=3),
                      lambda sub: st.dictionaries(st.sampled_from(["a", "b", "c", "d", "x", "y"]), st.one_of(leaf, sub),
                                                  max_size=4), max_leaves=12)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions, states, st.booleans())
def test_gates_agree_with_an_independent_evaluator(expr, state, lower):
    spell = (lambda v: {None: "null", True: "true", False: "false"}[v]) if lower else repr
    source = render(expr, spell)
    gate = compile_gate(source)
    assert gate.test(State.of(state)) == ref_eval(expr, state), source
    assert gate_open(source, State.of(state)) == ref_eval(expr, state)
    assert gate_open(source, None)  # no state: nothing is gated


def test_the_pinned_semantics():
    s = State.of({"quest": {"toll_paid": True}, "rep": {"guild": 3, "name": "x"}, "flags": {}, "inv": {"lamp": 1}})
    holds = lambda src: compile_gate(src).test(s)  # noqa: E731
    assert holds("quest.toll_paid and rep.guild >= 2 and not flags.bridge_burned")
    assert not holds("missing") and holds("not missing")  # a missing name is null; bare null false
    assert not holds("missing == null") and not holds("missing != 1") and not holds("missing in [1]")
    assert not holds("missing not in [1]")  # any comparison with null is false
    assert not holds("rep.guild == \"3\"") and not holds("rep.guild != \"3\"")  # across types: false
    assert not holds("quest.toll_paid == 1") and not holds("rep.name < 5")
    assert holds("1 <= rep.guild < 4") and not holds("3 < rep.guild < 4")
    assert holds("\"lamp\" in inv") and not holds("\"rope\" in inv") and holds("\"x\" in rep.name")
    assert holds("rep.guild in [1, 2, 3]") and not holds("rep.guild in [\"3\"]")
    assert not holds("quest.toll_paid.deeper")  # under a non-object: null
    assert compile_gate("a.b and c or not d").names == {"a.b", "c", "d"}
    assert not compile_gate("quest.toll_paid").test(None) and compile_gate("not x").test(EMPTY)


@pytest.mark.parametrize("source", [
    "", "   ", "a +", "a + 1", "f(x)", "a[0]", "__import__('os').system('x')", "a if b else c", "lambda: 1",
    "(a := 1)", "a is None", "1 <", "a.b.", "{1: 2}", "[1, 2]", "a in [b]", "a\nb", "a; b", "import os",
    "'x' * 3", "a @ b", "a.__class__()", "{a}", "a in (1, f(2))", "-a", "x" * 2001,
])
def test_malformed_expressions_are_refused_with_a_column(source):
    with pytest.raises(GateError, match=r"column \d+"):
        compile_gate(source)


def test_a_syntax_error_in_lore_names_the_file_and_line(tmp_path):
    path = tmp_path / "gated.md"
    path.write_text("---\ntitle: T\nkind: k\nnpc_scope: all\nchapter: 1\nrequires: \"quest.done and (\"\n---\nBody "
                    "text here.\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"gated\.md:6: requires .*column"):
        parse_document(path)
    path.write_text("---\ntitle: T\nkind: k\nnpc_scope: all\nchapter: 1\nrequires: 3\n---\nBody.\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"gated\.md:6: requires must be an expression in quotes"):
        parse_document(path)
    path.write_text("---\ntitle: T\nkind: k\nnpc_scope: all\nchapter: 1\nrequires: \" a.b  \"\n---\nBody.\n",
                    encoding="utf-8")
    assert parse_document(path).requires == "a.b"


def nested(depth: int) -> dict:
    state: dict = {"leaf": 1}
    for _ in range(depth - 1):
        state = {"n": state}
    return state


@pytest.mark.parametrize("bad, message", [
    ([1, 2], "state must be a JSON object"), ("flags", "state must be a JSON object"),
    (nested(9), "nested deeper than 8"), ({"big": "x" * (64 * 1024)}, "larger than 64 KB"),
    ({"inv": ["lamp"]}, r"state\.inv: a list is not allowed"), ({"x": {"y": math.nan}}, r"state\.x\.y: nan"),
    ({"x": {1: 2}}, "key 1 is not a string"), (nested(100_000), "nested deeper than 8"),
])
def test_a_bad_state_is_an_input_error_naming_the_field(bad, message):
    with pytest.raises(InputError, match=message):
        State.of(bad)


def test_a_state_is_frozen_and_hashable_by_its_content():
    raw = {"b": {"y": 1}, "a": True}
    s = State.of(raw)
    raw["a"] = False  # the caller's object may change afterwards: the state does not
    assert s.get("a") is True and s.get("b.y") == 1 and s.get("b.z") is None
    assert s == State.of({"a": True, "b": {"y": 1}}) and hash(s) == hash(State.of({"a": True, "b": {"y": 1}}))
    assert State.of(nested(8)).get("n.n.n.n.n.n.n.leaf") == 1 and State.of(None) is EMPTY


def test_problems_warn_on_unknown_names_and_comparisons_across_types():
    schema = {"rep.guild": "number", "quest.done": "bool", "inv.lamp": "number", "time.watch": "string"}
    gate = compile_gate("rep.guild >= \"2\" and quest.done and rep.other and \"lamp\" in inv and "
                        "time.watch in [\"dark\", 3] and 1 == \"1\"")
    problems = gate.problems(schema)
    assert any("'rep.other' is not in the world's state schema" in p for p in problems)
    assert any("rep.guild >= \"2\"" in p and "number with string" in p for p in problems)
    assert any("1 == \"1\"" in p for p in problems)
    assert not any("inv" in p for p in problems)  # a prefix of declared names is an object
    assert not any("time.watch" in p for p in problems)  # one list member of its type is enough
    assert [p for p in compile_gate("rep.other > 1").problems(None)] == []  # no schema: names are not checked


def test_a_name_part_that_is_a_python_keyword_is_a_name():
    """A fourth development world's `carries.pass` was refused as a syntax error: `pass` is a Python keyword."""
    gate = compile_gate('carries.pass == "company" and not flags.import and quest.class >= 2')
    assert gate.names == {"carries.pass", "flags.import", "quest.class"}
    assert gate.test({"carries": {"pass": "company"}, "quest": {"class": 3}})
    assert not gate.test({"carries": {"pass": "company"}, "flags": {"import": True}, "quest": {"class": 3}})
    assert compile_gate('flags.note == "a.pass"').test({"flags": {"note": "a.pass"}})  # a string stays as written
    with pytest.raises(GateError):
        compile_gate("flags.pass and")
