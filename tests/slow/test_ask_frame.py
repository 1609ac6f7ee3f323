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
