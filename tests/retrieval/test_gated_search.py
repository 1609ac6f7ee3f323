"""State-gated lore in the search: over random states, every retriever (dense, BM25, hybrid, reranked) returns only
chunks whose document's gate holds, and dense search returns exactly the brute-force top-k of those (so the gate is
applied inside the search, not after it). Real FAISS, the real embedder, a tiny corpus."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrieval.gates import State
from retrieval.index import LoreIndex
from retrieval.rebuild import rebuild_index
from retrieval.retriever import RetrieverSpec, make_retriever
from retrieval.types import Scope
from tests.conftest import write_corpus
from tests.fixtures_data import LORE


def _num(v):
    return v if type(v) in (int, float) else None


# each gated document, and its gate written again in plain Python: the oracle does not use retrieval/gates.py; each
# text holds a name found nowhere else (a leak is that name where the gate is shut)
GATED = {
    "amber-vault": ('carries.key == "amber"', lambda s: s.get("carries", {}).get("key") == "amber",
                    "The amber vault behind the clock holds the seed of every orange tree, counted by Tomasa "
                    "Verdún."),
    "guild-ledger": ("rep.guild >= 2 and not flags.burned",
                     lambda s: (_num(s.get("rep", {}).get("guild")) or -1) >= 2
                     and not s.get("flags", {}).get("burned"),
                     "The guild ledger lists the 12 binders, led by Ximo Alcaraz, who may enter the bindery after "
                     "dark."),
    "night-bell": ('time.of_day in ["dusk", "night"]', lambda s: s.get("time", {}).get("of_day") in ("dusk", "night"),
                   "At night the lantern bell of the tower rings nine times for the watchman Pau Querol."),
    "oath": ("quest.oath", lambda s: s.get("quest", {}).get("oath") not in (None, False, 0, ""),
             "Readers who swore the oath of the candle meet at the new moon with Brígida Llull."),
}


SECRETS = {"amber-vault": "Verdún", "guild-ledger": "Alcaraz", "night-bell": "Querol", "oath": "Llull"}


def gated_lore() -> dict[str, str]:
    docs = dict(LORE)
    for doc, (requires, _py, text) in GATED.items():
        docs[doc] = (f"---\ntitle: {doc.replace('-', ' ').title()}\nkind: room\nnpc_scope: all\nchapter: 1\n"
                     f"requires: '{requires}'\n---\n{text}\n")
    return docs


@pytest.fixture(scope="module")
def index(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("gated")
    rebuild_index(write_corpus(root / "lore", gated_lore()), root / "index", embedder)
    return LoreIndex.open(root / "index", embedder)


def oracle_allows(chunk, npc_scope: Scope, raw: dict) -> bool:
    """Scope without its state (chapter, NPC), then the document's gate in plain Python."""
    if not Scope(npc=npc_scope.npc, kinds=npc_scope.kinds, chapter=npc_scope.chapter).allows(chunk):
        return False
    return chunk.doc not in GATED or GATED[chunk.doc][1](raw)


states = st.fixed_dictionaries({}, optional={
    "carries": st.fixed_dictionaries({}, optional={"key": st.sampled_from(["amber", "blue", 3, True])}),
    "rep": st.fixed_dictionaries({}, optional={"guild": st.sampled_from([0, 1, 2, 3, 2.5, "2"])}),
    "flags": st.fixed_dictionaries({}, optional={"burned": st.sampled_from([True, False, 1, 0])}),
    "time": st.fixed_dictionaries({}, optional={"of_day": st.sampled_from(["day", "dusk", "night", 1])}),
    "quest": st.fixed_dictionaries({}, optional={"oath": st.sampled_from([True, False, 1, 0, "yes", ""])}),
})
scopes = st.sampled_from([Scope(), Scope(chapter=1), Scope(npc="warden", kinds=frozenset({"room", "rule"}), chapter=2),
                          Scope(npc="archivist", kinds=frozenset({"history", "item"}))])
QUERIES = ["What does the amber vault hold?", "Who may enter the bindery after dark?",
           "How many times does the bell ring at night?", "Where do the readers of the candle oath meet?",
           "How many books may I borrow?"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(raw=states, base=scopes, query=st.sampled_from(QUERIES), k=st.integers(1, 6))
def test_gated_search_matches_a_brute_force_oracle(index, embedder, raw, base, query, k):
    scope = Scope(npc=base.npc, kinds=base.kinds, chapter=base.chapter, state=State.of(raw))
    allowed = [i for i, c in enumerate(index.chunks) if oracle_allows(c, base, raw)]
    qvec = embedder.encode([query])[0]
    scores = np.asarray(index.vectors)[allowed] @ qvec
    top = [index.chunks[allowed[i]].id for i in np.argsort(-scores, kind="stable")[:k]]
    dense = index.search_vector(qvec, k, scope)
    assert [h.chunk.id for h in dense] == top  # exactly the top-k of the allowed: filtered inside the search
    ok = {index.chunks[i].id for i in allowed}
    for mode, rerank in (("bm25", "none"), ("hybrid", "none"), ("hybrid", "sentences")):
        hits = make_retriever(RetrieverSpec(mode=mode, rerank=rerank), embedder).search(index, query, qvec, k, scope)
        assert {h.chunk.id for h in hits} <= ok, (mode, rerank)
    assert all(scope.allows(index.chunks[i]) for i in allowed)
    assert all(not scope.allows(c) for c in index.chunks if c.id not in ok)


def test_a_gate_opens_and_closes_with_the_state(index, embedder):
    qvec = embedder.encode(["What does the amber vault hold?"])[0]
    n = len(index.chunks)

    def docs(state):
        return {h.chunk.doc for h in index.search_vector(qvec, n, Scope(chapter=3, state=state))}

    assert "amber-vault" not in docs(State.of({})) and "amber-vault" not in docs(State.of({"carries": {"key": "x"}}))
    assert "amber-vault" in docs(State.of({"carries": {"key": "amber"}}))
    assert "guild-ledger" in docs(State.of({"rep": {"guild": 2}}))
    assert "guild-ledger" not in docs(State.of({"rep": {"guild": 2}, "flags": {"burned": True}}))  # backwards
    assert {"amber-vault", "oath"} <= docs(None)  # no state: no gate, as no chapter is every chapter
    assert index.chunks[index.row["oath#0"]].requires == "quest.oath"  # stored with the chunk at build
