"""Property test: random add / edit / delete sequences on a corpus, each followed by an incremental rebuild, against a
brute-force oracle (the documents as generated, their chunks, numpy cosine over freshly encoded vectors).

After every rebuild: the index holds exactly the oracle's documents and chunks (no duplicates), it embedded exactly
the chunks the previous generation did not have, and scoped search (NPC, kinds, chapter) returns only allowed chunks,
the exact top-k of the oracle's brute-force search."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrieval.chunking import chunk_document
from retrieval.index import LoreIndex
from retrieval.rebuild import rebuild_index
from retrieval.types import Document, Scope

WORDS = ("river stone bread lamp rope salt wheel gate tower field ship cloud copper wool honey bell market road "
         "winter harvest mill bridge well forge").split()
IDS = ["d0", "d1", "d2", "d3", "d4"]
CHUNK_WORDS, OVERLAP = 24, 4
K = 3
SCOPES = [Scope(), Scope(chapter=1), Scope(npc="n1"), Scope(npc="n2", chapter=2),
          Scope(npc="n1", kinds=frozenset({"note"}), chapter=3), Scope(npc="n3", kinds=frozenset({"rule"}))]
QUERIES = ["salt ships at the market", "the copper bell in the tower", "winter bread and honey"]

sentence = st.lists(st.sampled_from(WORDS), min_size=3, max_size=10).map(lambda ws: " ".join(ws).capitalize() + ".")
doc_spec = st.fixed_dictionaries({
    "kind": st.sampled_from(["note", "rule"]),
    "scope": st.sampled_from([None, ("n1",), ("n2",), ("n1", "n2")]),
    "chapter": st.integers(1, 3),
    "paragraphs": st.lists(st.lists(sentence, min_size=1, max_size=3).map(" ".join), min_size=1, max_size=2),
})
op = st.one_of(st.tuples(st.just("put"), st.sampled_from(IDS), doc_spec),  # add or edit
               st.tuples(st.just("del"), st.sampled_from(IDS)))


def to_file(spec: dict) -> str:
    scope = "all" if spec["scope"] is None else "[" + ", ".join(spec["scope"]) + "]"
    body = "\n\n".join(spec["paragraphs"])
    return f"---\ntitle: T\nkind: {spec['kind']}\nnpc_scope: {scope}\nchapter: {spec['chapter']}\n---\n{body}\n"


def oracle_chunks(docs: dict[str, dict]) -> list:
    out = []
    for doc_id in sorted(docs):  # built from the specs, not from the files
        s = docs[doc_id]
        doc = Document(id=doc_id, title="T", kind=s["kind"], npc_scope=s["scope"], chapter=s["chapter"],
                       body="\n\n".join(s["paragraphs"]), path="")
        out += chunk_document(doc, CHUNK_WORDS, OVERLAP)
    return out


def check_search(lore: LoreIndex, chunks: list, vectors: np.ndarray, qvecs: np.ndarray) -> None:
    """vectors: (N, dim) oracle vectors of `chunks`; qvecs: (Q, dim)."""
    row = {c.id: i for i, c in enumerate(chunks)}
    for scope in SCOPES:
        allowed = np.array([i for i, c in enumerate(chunks) if scope.allows(c)], dtype=np.int64)
        for q in qvecs:
            hits = lore.search_vector(q, K, scope)
            assert all(scope.allows(h.chunk) for h in hits)
            scores = vectors[allowed] @ q if allowed.size else np.zeros(0)  # (A,)
            order = allowed[np.argsort(-scores, kind="stable")][:K]
            assert len(hits) == len(order)
            want = vectors[order] @ q  # (k,) oracle scores, descending
            got = np.array([vectors[row[h.chunk.id]] @ q for h in hits])
            assert np.allclose([h.score for h in hits], got, atol=1e-4)  # the index's scores are the cosines
            assert np.allclose(got, want, atol=1e-4)  # same ranking; only exact ties could swap two ids
            for h, i, s in zip(hits, order, want):
                assert h.chunk.id == chunks[i].id or abs(s - vectors[row[h.chunk.id]] @ q) < 1e-4


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=st.dictionaries(st.sampled_from(IDS), doc_spec, min_size=1, max_size=3),
       ops=st.lists(op, min_size=1, max_size=3))
def test_incremental_rebuilds_match_a_brute_force_oracle(embedder, first, ops):
    cache: dict[str, np.ndarray] = {}

    def encode(texts: list[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in cache]
        if new:
            cache.update(zip(new, embedder.encode(new)))
        return np.stack([cache[t] for t in texts]) if texts else np.zeros((0, embedder.dim), np.float32)

    qvecs = encode(QUERIES)  # (Q, dim)
    with tempfile.TemporaryDirectory() as tmp:
        corpus, root = Path(tmp) / "lore", Path(tmp) / "index"
        corpus.mkdir()
        docs: dict[str, dict] = {}
        previous: set[str] = set()
        for step in [("put", i, spec) for i, spec in first.items()] + ops:
            if step[0] == "put":
                docs[step[1]] = step[2]
                (corpus / f"{step[1]}.md").write_text(to_file(step[2]), encoding="utf-8")
            elif step[1] in docs and len(docs) > 1:  # never the last one: an empty corpus is refused (tested)
                del docs[step[1]]
                (corpus / f"{step[1]}.md").unlink()
            else:
                continue
            if len(docs) < len(first) and not previous:
                continue  # still writing the first corpus
            stats = rebuild_index(corpus, root, embedder, chunk_words=CHUNK_WORDS, overlap_words=OVERLAP)
            chunks = oracle_chunks(docs)
            lore = LoreIndex.open(root, embedder)
            ids = [c.id for c in lore.chunks]
            assert len(ids) == len(set(ids)) == len(chunks) == stats.chunks == lore.index.ntotal
            assert set(ids) == {c.id for c in chunks}
            assert {c.id: c for c in lore.chunks} == {c.id: c for c in chunks}
            assert set(lore.documents()) == set(docs) and lore.manifest["counts"]["documents"] == len(docs)
            if not stats.extra["unchanged"]:
                assert stats.embedded == sum(c.hash not in previous for c in chunks)
            previous = {c.hash for c in lore.chunks}
            check_search(lore, chunks, encode([c.embed_text() for c in chunks]), qvecs)
