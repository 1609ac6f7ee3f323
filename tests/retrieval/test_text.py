"""The text rules: markdown to prose, the one sentence splitter, words, names, numbers, and clean-text checks."""

import time

import pytest

from retrieval.text import (
    first_sentence,
    is_fragment,
    markdown_to_text,
    markup_problems,
    numbers,
    proper_names,
    split_sentences,
    typed_sentences,
    words,
)

LORE = """# The Lantern Quarter

The quarter has **three** markets, a [harbour](harbour.md) and `one` bell. Its lamps were lit by
<em>order</em> of the council in 1612.

The markets are:

- **The Crook** — the market quarter
- Fishmongers
  - the eel stalls
  - the salt sheds. They close at noon
1. first of all, keep left
2. Then ask at the gate!

| Name | Age |
|------|-----|
| Ana | 30 |
| Tomás Ibarra |  |

<div class="note">
  A note in <b>HTML</b> &amp; prose
  <script>alert("no")</script>
</div>

```python
print("code is not prose")
```

    indented code is not prose either

> A quoted *saying*, kept as prose.

## Empty heading

## Another heading
"""


def test_markdown_to_text_renders_prose_from_tokens():
    text = markdown_to_text(LORE)
    assert "Lantern Quarter" not in text  # the title heading goes
    assert "heading" not in text  # headings without a body yield nothing
    assert "code" not in text.replace("`one`", "")  # code blocks are dropped, code spans keep their text
    assert "The quarter has three markets, a harbour and one bell." in text
    assert "lit by order of the council in 1612." in text
    assert "The markets are.\n\n" in text  # a colon leading into a list becomes a period
    assert "The Crook — the market quarter." in text
    assert "\nThe eel stalls.\n" in text  # a nested item is its own sentence, capitalised and terminated
    assert "The salt sheds. They close at noon." in text
    assert "First of all, keep left." in text and "Then ask at the gate!" in text
    assert "Name: Ana; Age: 30." in text and "Name: Tomás Ibarra." in text
    assert "A note in HTML & prose." in text and "alert" not in text
    assert "A quoted saying, kept as prose." in text
    assert "\n\n" in text  # paragraphs are separated by blank lines


def test_every_lore_sentence_is_clean():
    sentences = split_sentences(markdown_to_text(LORE))
    assert len(sentences) >= 12
    for s in sentences:
        assert markup_problems(s) == [], s
    assert markdown_to_text("## A heading alone\n") == ""
    assert markdown_to_text("") == ""


@pytest.mark.parametrize("text, expected", [
    ("Mr. Vell met Dr. Ana Ruiz at St. Clement's. They talked.", ["Mr. Vell met Dr. Ana Ruiz at St. Clement's.",
                                                                 "They talked."]),
    ("Fr. Anselm and Br. Tomás came, e.g. at dawn, i.e. early. Then they left.",
     ["Fr. Anselm and Br. Tomás came, e.g. at dawn, i.e. early.", "Then they left."]),
    ("It was No. 5 vs. No. 6. The end.", ["It was No. 5 vs. No. 6.", "The end."]),
    ("J. R. Tolkien wrote it. He was English.", ["J. R. Tolkien wrote it.", "He was English."]),
    ("The ratio is 3.5 to one. It opened on 3 May 1387. Then war came.",
     ["The ratio is 3.5 to one.", "It opened on 3 May 1387.", "Then war came."]),
    ("Born c. 1700, he died in 1731. Sad.", ["Born c. 1700, he died in 1731.", "Sad."]),
    ("Wait... what? He left... And never came back.", ["Wait... what?", "He left...", "And never came back."]),
    ('He said "Go home." Then he left. (It was late.) She stayed.',
     ['He said "Go home."', "Then he left.", "(It was late.)", "She stayed."]),
    ("Dijo «Vete.» Luego se fue. ¿Qué pasa? ¡Nada! Bueno.",
     ["Dijo «Vete.»", "Luego se fue.", "¿Qué pasa?", "¡Nada!", "Bueno."]),
    ("First paragraph ends here\n\nSecond  paragraph\nwraps here.", ["First paragraph ends here",
                                                                     "Second paragraph wraps here."]),
    ("Halt. Walked? No. Walked? No.", ["Halt.", "Walked?", "No.", "Walked?", "No."]),
    ("Halt. ... Move along. So do I. Then go.", ["Halt. ...", "Move along.", "So do I.", "Then go."]),
    ('"Stop!" he said. "Now."', ['"Stop!" he said.', '"Now."']),
    ('She writes: "These are not fables. They are places." Then she left.',
     ['She writes: "These are not fables. They are places."', "Then she left."]),
    ("He said: «Quick hands. Good boy.» (Both true. Both late.) Next.",
     ["He said: «Quick hands. Good boy.»", "(Both true. Both late.)", "Next."]),
    ('A stray " quote. It does not swallow the rest.', ['A stray " quote.', "It does not swallow the rest."]),
    ("", []),
])
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


def test_split_sentences_never_yields_a_fragment():
    text = ("Mr. and Mrs. Vell, Dr. Ruiz, St. Clement and Fr. Anselm met on 3 May 1387 at 3.5 leagues, i.e. far. "
            "J. R. Tolkien, etc. (Br. Tomás came.) «Sí.» ¿Y tú? ... No. 7 was lost. vs. the rest.")
    for s in split_sentences(text):
        assert any(c.isalnum() for c in s), s
    assert split_sentences("one two. Three four five six.", min_words=3) == ["Three four five six."]


def test_split_sentences_is_fast():
    text = ("The first stone was laid on 3 May 1387 by the master mason Íñigo de Varo. Mr. Vell kept the keys. "
            "It burned in 1731! Who saved the books? Dr. Ana Ruiz did, e.g. the red ledger. ") * 4
    n_words = len(text.split())
    split_sentences(text)
    start = time.perf_counter()
    for _ in range(200):
        split_sentences(text)
    per_100_words_ms = (time.perf_counter() - start) / 200 * 1000 * 100 / n_words
    assert per_100_words_ms < 1.0, per_100_words_ms  # the budget is 5 ms per 100 words; measured about 0.05


def test_first_sentence_and_words():
    assert first_sentence("Halt. Move along.") == "Halt."
    assert first_sentence("  ") == ""
    assert words("Ain't forty-two ways, Vell's? 3.5") == ["Ain't", "forty-two", "ways", "Vell's", "3", "5"]


def test_proper_names():
    text = ('Íñigo de Varo laid it. The Crook lies near Orsana, Velmar. "Go home," Mira said. He said "Wait here." '
            "I saw Maestra Ana Ruiz's ledger. For the record: Nothing more. It was Tuesday.")
    names = proper_names(text)
    assert {"Íñigo de Varo", "Crook", "Orsana", "Velmar", "Mira", "Maestra Ana Ruiz", "Tuesday"} <= names
    assert not names & {"The", "Go", "Wait", "I", "It", "He", "For", "Nothing", "Orsana Velmar"}


def test_numbers():
    assert numbers("On 3 May 1387 twelve men and the first 3,000 coins; the 12th bell, 3.5 leagues.") == {
        "3", "1387", "twelve", "first", "3,000", "12", "3.5"}
    assert numbers("No digits here.") == set()


@pytest.mark.parametrize("text, problem", [
    ("The **bold** reply.", "emphasis"),
    ("A __bold__ reply.", "emphasis"),
    ("Use `code` here.", "code"),
    ("# Heading\nText here.", "heading"),
    ("Items:\n- one\n- two.", "list item"),
    ("Steps:\n1. Go.\n2. Stop.", "list item"),
    ("| a | b |\n|---|---|", "table"),
    ("A <b>bold</b> claim.", "HTML"),
    ("The keys are old. and they rust in the rain.", "fragment"),
    ("Which stands above the sea.", "fragment"),
    ("The tower rises above the sea and", "unterminated"),
    ("He said “go home.", "unbalanced “”"),
    ('He said "go home.', 'unbalanced "'),
    ("The door (the red one is shut.", "unbalanced ()"),
    ("See [the map.", "unbalanced []"),
    ("«Vete, he said.", "unbalanced «»"),
])
def test_markup_problems_catches_what_is_not_clean(text, problem):
    problems = markup_problems(text)
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize("text", [
    "Halt. The east stair is closed after dark, reader. Move along, reader.",
    'She said, "Keep left." Then she left (quickly).',
    "¿Dónde está? «Aquí», dijo él. Which book do you want?",
    "Mr. Vell arrived at 3.5 leagues... And then? Nothing!",
    "*waves* Hello there.",
    "Bring ink, paper, etc. and a lamp. We start at dawn, e.g. at six.",
])
def test_clean_replies_have_no_problems(text):
    assert markup_problems(text) == []


def test_is_fragment():
    assert is_fragment("and rises above the sea.")
    assert is_fragment("— called the Crook by everyone.")
    assert is_fragment("Called the Crook by everyone.")
    assert not is_fragment("And so it was.")
    assert not is_fragment("Which book?")
    assert not is_fragment("¿Qué pasa?")
    assert not is_fragment("3 May was cold.")


def test_a_typed_line_also_ends_a_sentence_at_a_period_before_lower_case():
    assert typed_sentences("long day lol. anyway how many came?") == ["long day lol.", "anyway how many came?"]
    assert split_sentences("long day lol. anyway how many came?") == ["long day lol. anyway how many came?"]
    assert typed_sentences("I met Dr. smith, e.g. at noon. ok then.") == ["I met Dr. smith, e.g. at noon.", "ok then."]
    assert typed_sentences("") == []
