import pytest

from app.runtime import trim_to_sentence


@pytest.mark.parametrize("text, expected", [
    ("Halt. Who goes there? Speak plainly and", "Halt. Who goes there?"),
    ("They talk. They smile. They all smile, and they", "They talk. They smile."),
    ('He said "Move along." Then he', 'He said "Move along."'),
    ("No sentence end at all here", "No sentence end at all here"),
    ("Short. And then a very long unfinished clause that goes on and on and on and on", "Short. And then a very "
     "long unfinished clause that goes on and on and on and on"),
    ("Version 1.5 is fine. Next", "Version 1.5 is fine."),
])
def test_trim_to_sentence(text, expected):
    assert trim_to_sentence(text) == expected
