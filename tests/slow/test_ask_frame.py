"""How a question is asked does not move a fact turn (grounding.ask_only), on the real default models and a
development world: the Library's demo line "Tell me in three words how many books Leonor brought ..." had been
"I do not know" while the same question without "Tell me" was answered (the frame moved the search, and a hidden
page then outscored the character's own)."""

import pytest

from tests.conftest import shipped_world_engine

pytestmark = pytest.mark.slow


def test_a_polite_frame_gets_the_answer_the_bare_question_gets(tmp_path, embedder, shared_models):
    engine = shipped_world_engine(tmp_path, embedder, "eterna.yaml", models=shared_models)
    engine.config = engine.config.model_copy(update={"grounding": engine.config.grounding.model_copy(
        update={"ask_only": True})})
    bare = engine.say("archivist", "How many books Leonor brought when she founded the Library?", session="a",
                      chapter=1)
    assert "one hundred and eighty-six" in bare.text
    for i, line in enumerate(["Tell me how many books Leonor brought when she founded the Library.",
                              "Tell me in three words how many books Leonor brought when she founded the Library.",
                              "Do you know how many books Leonor brought when she founded the Library?"]):
        reply = engine.say("archivist", line, session=f"f{i}", chapter=1)
        assert reply.grounding["answer"] == "extracted" and "one hundred and eighty-six" in reply.text, (line, reply)


def test_the_readme_example_names_the_founder(tmp_path, embedder, shared_models):
    """The README's first API call. The founding page told the journey and the mason who laid the first stone, never
    who founded the Library, and the reply named the mason; the page now says it, inside the sentence that also
    counts her books (a sentence of its own drew "how many books did Leonor bring ..." away from the count)."""
    engine = shipped_world_engine(tmp_path, embedder, "eterna.yaml", models=shared_models)
    reply = engine.say("archivist", "Who founded the Library?", session="readme", chapter=1)
    assert reply.route == "fact" and "Leonor de Quirós" in reply.text and "mason" not in reply.text, reply.text
