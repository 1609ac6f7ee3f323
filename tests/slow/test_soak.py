"""A short load soak in CI: `eterna serve`'s app on loopback, on the real default models (the default backend) and
the second world, with more clients than the queue admits. Every request is answered 200 or a deliberate 429, no
answered turn is missing from its session, and no session holds another client's line.

The long soak and its memory figures are `benchmarks/latency.py --only soak --soak-seconds 1800`, against
`eterna serve` in its own process (README)."""

import sys

import pytest

from tests.conftest import REPO, shipped_world_engine

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine(tmp_path_factory, embedder, shared_models):
    return shipped_world_engine(tmp_path_factory.mktemp("soak"), embedder, models=shared_models, sessions=True,
                                max_new_tokens=24)


def test_short_soak_answers_everything_and_keeps_sessions_apart(engine, monkeypatch):
    """4 clients on a queue of 2, 6 lines each (a new session every 3): the first turns are held inside the engine
    until the server has turned a request away, so the 429 path is taken however fast the machine is; every line
    is then answered, and counted in its own session."""
    import threading

    from fastapi import HTTPException

    import app.server as server_mod

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import latency
    finally:
        sys.path.remove(str(REPO / "benchmarks"))

    refused, real_enter, real_say = threading.Event(), server_mod._Queue.enter, engine.say

    def enter(queue):
        try:
            real_enter(queue)
        except HTTPException:
            refused.set()
            raise

    def say(*args, **kwargs):
        assert refused.wait(300), "no request was turned away while the queue was full"
        return real_say(*args, **kwargs)

    monkeypatch.setattr(server_mod._Queue, "enter", enter)
    monkeypatch.setattr(engine, "say", say)
    fig = latency.soak(engine, seconds=0, clients=4, rotate=3, turns=6)
    assert fig["statuses"].get(200) == 4 * 6 and set(fig["statuses"]) == {200, 429}, fig["statuses"]
    assert fig["errors_5xx"] == 0 and fig["sessions_used"] == 4 * 2  # players came and went
    assert fig["lost_turns"] == 0 and fig["foreign_turns"] == 0
