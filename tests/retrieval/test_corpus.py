import pytest

from retrieval.chunking import chunk_document
from retrieval.corpus import load_corpus, parse_document
from retrieval.errors import CorpusError


def test_loads_all_documents_with_metadata(tiny_corpus):
    docs = {d.id: d for d in load_corpus(tiny_corpus)}
    assert len(docs) == 6
    assert docs["wardens-keys"].npc_scope == ("warden",)
    assert docs["founding"].npc_scope is None
    assert docs["the-fire-truth"].chapter == 3


@pytest.mark.parametrize("front, message", [
    ("title: X\nkind: room\nnpc_scope: all\n", "lacks chapter"),
    ("title: X\nkind: kitchen\nnpc_scope: all\nchapter: 1\n", ":3: kind 'kitchen' is not declared by this world"),
    ("title: X\nkind: [a]\nnpc_scope: all\nchapter: 1\n", ":3: kind must be a word"),
    ("title: X\nkind: room\nnpc_scope: all\nchapter: zero\n", ":5: chapter must be"),
    ("title: X\nkind: room\nnpc_scope: all\nchapter: 1\nauthor: me\n", ":6: unknown front-matter key 'author'"),
    ("title: X\nkind: room\nnpc_scope: everyone\nchapter: 1\n", ":4: npc_scope must be"),
    ("title: [unclosed\nkind: room\n", "invalid YAML"),
])
def test_bad_front_matter_names_file_and_line(tmp_path, front, message):
    path = tmp_path / "bad.md"
    path.write_text(f"---\n{front}---\n# X\nSome text.\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=message) as e:
        parse_document(path, kinds=("room", "rule"))
    assert str(path) in str(e.value)


def test_any_kind_when_the_world_declares_none(tmp_path):
    path = tmp_path / "ok.md"
    path.write_text("---\ntitle: X\nkind: starport\nnpc_scope: all\nchapter: 1\n---\n# X\nSome text.\n")
    assert parse_document(path).kind == "starport"


def test_npc_scope_must_name_the_cast(tmp_path):
    from retrieval.corpus import load_corpus

    (tmp_path / "a.md").write_text("---\ntitle: A\nkind: room\nnpc_scope: [wardn]\nchapter: 1\n---\n# A\nText.\n")
    assert load_corpus(tmp_path)[0].npc_scope == ("wardn",)
    with pytest.raises(CorpusError, match=r"a.md:4: npc_scope names 'wardn', who is not in the cast"):
        load_corpus(tmp_path, npc_ids={"warden", "pell"})


def test_missing_front_matter_and_unclosed(tmp_path):
    (tmp_path / "a.md").write_text("# no front matter\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="a.md:1: missing front matter"):
        load_corpus(tmp_path)
    (tmp_path / "a.md").write_text("---\ntitle: X\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="not closed"):
        load_corpus(tmp_path)


def test_duplicate_ids_and_empty_dirs(tmp_path, tiny_corpus):
    sub = tiny_corpus / "more"
    sub.mkdir()
    (sub / "founding.md").write_text((tiny_corpus / "founding.md").read_text(), encoding="utf-8")
    with pytest.raises(CorpusError, match="also used by"):
        load_corpus(tiny_corpus)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CorpusError, match="no .md lore"):
        load_corpus(empty)
    with pytest.raises(CorpusError, match="not found"):
        load_corpus(tmp_path / "nope")


def test_chunks_respect_size_overlap_and_sections(tiny_corpus):
    doc = parse_document(tiny_corpus / "clock-room.md")
    chunks = chunk_document(doc, max_words=120, overlap_words=10)
    assert [c.heading for c in chunks] == ["The great clock", "Visitors"]
    assert chunks[0].id == "clock-room#0" and chunks[0].chapter == 1

    long_doc = doc.__class__(**{**doc.__dict__, "body": " ".join(f"Sentence number {i} is here." for i in range(200))})
    chunks = chunk_document(long_doc, max_words=40, overlap_words=8)
    assert len(chunks) > 5
    assert all(len(c.text.split()) <= 40 for c in chunks)
    for a, b in zip(chunks, chunks[1:]):  # the last whole sentence of one chunk opens the next
        last = a.text.rsplit("Sentence", 1)[1]
        assert b.text.startswith("Sentence" + last) and b.text.split()[0] == "Sentence"
    words = " ".join(c.text for c in chunks)
    assert all(f"number {i} " in words for i in range(200))


def test_chunks_of_markdown_lore_are_clean_sentences(tmp_path):
    """Tables, nested lists, HTML, code fences and a heading alone become clean sentences: no markup, no
    fragment, no chunk starting mid-sentence."""
    from retrieval.text import markup_problems, split_sentences

    md = """---
title: The Harbour
kind: place
npc_scope: all
chapter: 1
---
# The Harbour

The harbour has **three** quarters:

- **The Crook** — the market quarter, where the *fish* are sold
  - its eastern lanes, called the Needles
- The Wick, a tower on a knob of rock known as the Knuckle

| Quarter | Founded |
|---|---|
| The Crook | 1602 |
| The Wick | 1588 |

<div class="note">The tide rises <b>twice</b> a day.</div>

```
# not a heading
print("code is dropped")
```

## Bells

## Ferries

The ferry leaves at dawn. The ferryman, called Old Sorrel by everyone, rows it alone and charges two coins for the crossing, which he keeps in a tin.
"""
    path = tmp_path / "harbour.md"
    path.write_text(md, encoding="utf-8")
    chunks = chunk_document(parse_document(path), max_words=20, overlap_words=8)
    assert [c.heading for c in chunks if c.heading == "Bells"] == []  # a heading alone yields nothing
    text = " ".join(c.text for c in chunks)
    assert "Quarter: The Crook; Founded: 1602." in text and "The tide rises twice a day." in text
    assert "code is dropped" not in text and "not a heading" not in text
    for c in chunks:
        assert not markup_problems(c.text), (c.text, markup_problems(c.text))
        assert c.text[0].isupper() and c.text.rstrip()[-1] in ".!?", c.text
        for sent in split_sentences(c.text):
            assert not markup_problems(sent), sent
