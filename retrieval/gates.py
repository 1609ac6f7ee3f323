"""State gates: the `requires:` expression language of lore front matter, and the game state it is tested on.

    gate = compile_gate("quest.toll_paid and rep.guild >= 2 and not flags.bridge_burned")
    gate.test(State.of({"quest": {"toll_paid": True}, "rep": {"guild": 3}}))   # True
    gate.names                                                                     # the dotted names it reads

The language: dotted names (`quest.toll_paid`), `and`, `or`, `not`, parentheses, comparisons (`== != < <= > >=`,
chained as in `1 <= rep.guild < 4`), `in` / `not in`, and literals: strings, numbers, `true` / `false` / `null`
(or `True` / `False` / `None`), and a list of literals after `in`. It is parsed by Python's own parser (`ast`) and
only a whitelist of node types is accepted; nothing is ever `eval`'d. Semantics, pinned:

- a missing name is null (so is a name under something that is not an object);
- as a condition, null is false, `not null` is true; a bool is itself, a number is true unless 0, a string or an
  object unless empty;
- any comparison or `in` with null on either side is false (`!=` and `not in` too);
- a comparison across types (a string against a number, a bool against a number) is false; `Gate.problems` reports
  the ones a state schema makes visible, for `eterna validate` to warn about;
- `x in [..]` is membership (same type and equal); `"s" in name` is a substring test when the name holds a string,
  and a key test (a key whose value is not null) when it holds an object.

`State` is the game's state for one turn: a JSON object whose leaves are bool, number or string, at most 8 objects
deep and 64 KB as JSON, checked once (`State.of`, an InputError naming the field), then immutable and hashable, so a
scope that carries it can be a cache key. This module is the whole language; it knows nothing of any world.
"""

from __future__ import annotations

import ast
import json
import keyword
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from retrieval.errors import InputError

MAX_DEPTH = 8  # objects inside objects, the top one included
MAX_BYTES = 64 * 1024  # the state as compact JSON, UTF-8
MAX_SOURCE = 2000  # characters of one expression
TYPES = ("bool", "number", "string", "object")  # what a state schema may declare for a name

_LITERAL_NAMES = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_OPS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.In: "in",
        ast.NotIn: "not in"}


class GateError(ValueError):
    """A `requires` expression that is not in the language; `column` is 1-based within the expression."""

    def __init__(self, message: str, column: int = 1):
        super().__init__(f"column {column}: {message}")
        self.column = column


def kind(value: object) -> str:
    """The state type of a value: null, bool, number, string or object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"


def truthy(value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float, str)):
        return bool(value)
    return len(value) > 0  # an object


def compare(op: str, left: object, right: object) -> bool:
    """One comparison under the pinned semantics (`right` is a tuple for a list literal)."""
    if left is None or right is None:
        return False
    if op in ("in", "not in"):
        if isinstance(right, tuple):
            found = any(kind(x) == kind(left) and x == left for x in right if x is not None)
        elif isinstance(right, str) and isinstance(left, str):
            found = left in right
        elif isinstance(right, Mapping) and isinstance(left, str):
            found = right.get(left) is not None
        else:
            return False  # across types
        return found if op == "in" else not found
    a, b = kind(left), kind(right)
    if a != b:
        return False
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    if a not in ("number", "string"):
        return False  # bools and objects have no order
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]


# the compiled tree: ("and", (x, ...)) | ("or", (x, ...)) | ("not", x) | ("cmp", ((op, left, right), ...))
#                    | ("name", "a.b") | ("lit", value) | ("list", (value, ...))


def _literal(node: ast.expr):
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (bool, int, float, str))):
        return node.value
    if isinstance(node, ast.Name) and node.id in _LITERAL_NAMES:
        return _LITERAL_NAMES[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) and \
            isinstance(node.operand, ast.Constant) and kind(node.operand.value) == "number":
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    raise KeyError


# a part of a dotted name that is a Python keyword ("carries.pass", "flags.import") is read under a mangled name
_MANGLE = "__gate_kw_"
_KEYWORD_PART = re.compile(r"(?<=\.)(" + "|".join(keyword.kwlist) + r")(?!\w)"
                           r"|(?<![\w.])(" + "|".join(k for k in keyword.kwlist if k not in
                                                       ("and", "or", "not", "in", "is", "True", "False", "None"))
                           + r")(?=\.)")


def _unmangle(part: str) -> str:
    return part[len(_MANGLE):] if part.startswith(_MANGLE) else part


def _dotted(node: ast.expr) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(_unmangle(node.attr))
        node = node.value
    if isinstance(node, ast.Name) and node.id not in _LITERAL_NAMES:
        return ".".join([_unmangle(node.id), *reversed(parts)])
    return None


def _compile(node: ast.expr, in_list_ok: bool = False) -> tuple:
    col = getattr(node, "col_offset", 0) + 1
    if isinstance(node, ast.BoolOp):
        return ("and" if isinstance(node.op, ast.And) else "or", tuple(_compile(v) for v in node.values))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return ("not", _compile(node.operand))
    if isinstance(node, ast.Compare):
        terms = [node.left, *node.comparators]
        pairs = []
        for i, op in enumerate(node.ops):
            name = _OPS.get(type(op))
            if name is None:
                raise GateError(f"operator {type(op).__name__} is not allowed; use == != < <= > >= in, not in",
                                getattr(terms[i + 1], "col_offset", 0) + 1)
            pairs.append((name, _compile(terms[i]), _compile(terms[i + 1], in_list_ok=name in ("in", "not in"))))
        return ("cmp", tuple(pairs))
    if isinstance(node, (ast.List, ast.Tuple)):
        if not in_list_ok:
            raise GateError("a list may only follow `in` or `not in`", col)
        try:
            return ("list", tuple(_literal(e) for e in node.elts))
        except KeyError:
            raise GateError("a list after `in` may hold only literals (strings, numbers, true, false, null)",
                            col) from None
    try:
        return ("lit", _literal(node))
    except KeyError:
        pass
    name = _dotted(node)
    if name is not None:
        return ("name", name)
    what = {ast.Call: "a function call", ast.Subscript: "indexing ([...])", ast.BinOp: "arithmetic",
            ast.Lambda: "a lambda", ast.IfExp: "an if-expression", ast.NamedExpr: "an assignment",
            ast.Dict: "a mapping", ast.Set: "a set"}.get(type(node), type(node).__name__)
    raise GateError(f"{what} is not allowed; use dotted names, and/or/not, comparisons, in, and literals", col)


def _names(tree: tuple) -> set[str]:
    tag = tree[0]
    if tag == "name":
        return {tree[1]}
    if tag in ("and", "or"):
        return set().union(*(_names(t) for t in tree[1]))
    if tag == "not":
        return _names(tree[1])
    if tag == "cmp":
        return set().union(*(_names(a) | _names(b) for _, a, b in tree[1]))
    return set()


@dataclass(frozen=True)
class Gate:
    """A compiled `requires` expression. `names`: the dotted state names it reads."""

    source: str
    tree: tuple
    names: frozenset[str]

    def value(self, tree: tuple, state: State) -> object:
        tag = tree[0]
        if tag == "name":
            return state.get(tree[1])
        if tag == "lit":
            return tree[1]
        if tag == "list":
            return tree[1]
        return self.holds(tree, state)

    def holds(self, tree: tuple, state: State) -> bool:
        tag = tree[0]
        if tag == "and":
            return all(self.holds(t, state) for t in tree[1])
        if tag == "or":
            return any(self.holds(t, state) for t in tree[1])
        if tag == "not":
            return not self.holds(tree[1], state)
        if tag == "cmp":
            return all(compare(op, self.value(a, state), self.value(b, state)) for op, a, b in tree[1])
        return truthy(self.value(tree, state))

    def test(self, state: State | Mapping | None) -> bool:
        """Is the gate open for this state? (None: the empty state.)"""
        return self.holds(self.tree, state if isinstance(state, State) else State.of(state))

    def problems(self, schema: Mapping[str, str] | None) -> list[str]:
        """What `eterna validate` warns about: comparisons across types (between literals always; with a name when
        the schema declares its type) and, when a schema is declared, names it lacks."""
        out: list[str] = []
        types = dict(schema or {})

        def name_type(name: str) -> str | None:
            if name in types:
                return types[name]
            return "object" if any(k.startswith(name + ".") for k in types) else None

        if schema is not None:
            out += [f"name {n!r} is not in the world's state schema (world.state)" for n in sorted(self.names)
                    if name_type(n) is None]

        def type_of(t: tuple) -> str | None:
            if t[0] == "name":
                return name_type(t[1])
            if t[0] == "lit":
                return kind(t[1])
            if t[0] == "list":
                return "list"
            return "bool"

        def walk(t: tuple) -> None:
            if t[0] in ("and", "or"):
                for x in t[1]:
                    walk(x)
            elif t[0] == "not":
                walk(t[1])
            elif t[0] == "cmp":
                for op, a, b in t[1]:
                    ta, tb = type_of(a), type_of(b)
                    if a[0] not in ("name", "lit", "list") or b[0] not in ("name", "lit", "list"):
                        out.append(f"`{op}` compares the result of a condition; parenthesise what you meant")
                    if None in (ta, tb) or "null" in (ta, tb):
                        continue
                    if op in ("in", "not in"):
                        items = {kind(x) for x in b[1] if x is not None} if tb == "list" else set()
                        ok = (tb == "list" and (not items or ta in items)) or \
                             (tb in ("string", "object") and ta == "string")
                    else:
                        ok = ta == tb and (op in ("==", "!=") or ta in ("number", "string"))
                    if not ok:
                        out.append(f"`{_show(a)} {op} {_show(b)}` compares {ta} with {tb}: always false")
        walk(self.tree)
        return out


def _show(t: tuple) -> str:
    if t[0] == "name":
        return t[1]
    if t[0] == "lit":
        return json.dumps(t[1])
    if t[0] == "list":
        return json.dumps(list(t[1]))
    return "(...)"


@lru_cache(maxsize=4096)
def compile_gate(source: str) -> Gate:
    """Parse and check one expression (compiled once per distinct text). A GateError names the column."""
    if not isinstance(source, str) or not source.strip():
        raise GateError("requires must be a non-empty expression string")
    if len(source) > MAX_SOURCE:
        raise GateError(f"expression is {len(source)} characters; the limit is {MAX_SOURCE}")
    if "\n" in source.strip():
        raise GateError("an expression is one line", source.strip().index("\n") + 1)
    text = source.strip()
    if "." in text:  # (outside string literals only: a quoted "x.pass" stays as written)
        pieces = re.split(r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""", text)
        text = "".join(p if i % 2 else _KEYWORD_PART.sub(lambda m: _MANGLE + m.group(0), p)
                       for i, p in enumerate(pieces))
    try:
        expr = ast.parse(text, mode="eval")
    except SyntaxError as e:
        at = e.offset or 1  # (a column in the source as written: the mangled names before it are longer)
        at -= len(_MANGLE) * text[:max(at - 1, 0)].count(_MANGLE)
        raise GateError(f"syntax error ({e.msg})", max(at, 1)) from None
    except (ValueError, RecursionError, MemoryError):
        raise GateError("expression cannot be parsed (too deeply nested?)") from None
    try:
        tree = _compile(expr.body)
    except RecursionError:
        raise GateError("expression is too deeply nested") from None
    return Gate(source, tree, frozenset(_names(tree)))


class State(Mapping):
    """One turn's game state: a validated, immutable JSON object, hashable by its canonical JSON."""

    __slots__ = ("_data", "_key")

    def __init__(self, data: dict, key: str):
        self._data, self._key = data, key

    @classmethod
    def of(cls, obj: object, field: str = "state") -> State:
        """Check and freeze a game state (None: the empty state). An InputError names `field` and the fix."""
        if isinstance(obj, State):
            return obj
        if obj is None:
            return EMPTY
        if not isinstance(obj, Mapping):
            raise InputError(f"{field} must be a JSON object (names to values), got {kind_name(obj)}")
        budget = 0
        stack = [(obj, 1, field)]
        while stack:
            value, depth, path = stack.pop()
            if depth > MAX_DEPTH:
                raise InputError(f"{path}: {field} is nested deeper than {MAX_DEPTH} levels; flatten it")
            for k, v in value.items():
                if not isinstance(k, str):
                    raise InputError(f"{path}: key {k!r} is not a string")
                where = f"{path}.{k}"
                budget += len(k) + (len(v) if isinstance(v, str) else 8)
                if budget > MAX_BYTES:
                    raise InputError(f"{field} is larger than {MAX_BYTES // 1024} KB; send only what gates need")
                if isinstance(v, Mapping):
                    stack.append((v, depth + 1, where))
                elif isinstance(v, float) and not math.isfinite(v):
                    raise InputError(f"{where}: {v} is not a finite number")
                elif v is not None and not isinstance(v, (bool, int, float, str)):
                    raise InputError(f"{where}: {kind_name(v)} is not allowed; a state value is an object, "
                                     "bool, number or string")
        key = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if len(key.encode("utf-8")) > MAX_BYTES:
            raise InputError(f"{field} is larger than {MAX_BYTES // 1024} KB as JSON; send only what gates need")
        return cls(json.loads(key), key)

    def get(self, name: str, default: object = None) -> object:
        """The value at a dotted name, or `default` (null) when any part is missing or not an object."""
        value: object = self._data
        for part in name.split("."):
            if not isinstance(value, dict) or part not in value:
                return default
            value = value[part]
        return value

    def __getitem__(self, key: str) -> object:
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, State):
            return other._key == self._key
        return isinstance(other, Mapping) and self._data == other

    def __repr__(self) -> str:
        return f"State({self._key})"

    def to_json(self) -> dict:
        return json.loads(self._key)


def kind_name(value: object) -> str:
    return {list: "a list", tuple: "a list", str: "a string", bool: "a bool", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)


EMPTY = State({}, "{}")


def gate_open(requires: str | None, state: State | None) -> bool:
    """Is a document with this `requires` visible in this state? (No requires: always; no state: no gating.)"""
    return requires is None or state is None or compile_gate(requires).test(state)
