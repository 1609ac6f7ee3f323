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
def engine(tmp_path_factory, embedder):
    return shipped_world_engine(tmp_path_factory.mktemp("soak"), embedder, sessions=True, max_new_tokens=24)


def test_short_soak_answers_everything_and_keeps_sessions_apart(engine):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import latency
    finally:
        sys.path.remove(str(REPO / "benchmarks"))

    fig = latency.soak(engine, seconds=20, clients=4, rotate=3)  # queue of 2: some requests must be turned away
    assert fig["sessions_used"] > 4  # players came and went
    assert set(fig["statuses"]) <= {200, 429}, fig["statuses"]
    assert fig["errors_5xx"] == 0
    assert fig["statuses"].get(200, 0) >= 4 and fig["statuses"].get(429, 0) >= 1, fig["statuses"]
    assert fig["lost_turns"] == 0 and fig["foreign_turns"] == 0
