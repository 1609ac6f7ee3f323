"""Crash-proof index rebuilds: SIGKILL at random moments, readers racing generation swaps, corrupt files, bad lore,
the rebuild lock. Every test uses the real embedder and real files under tmp_path; nothing is mocked."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import retrieval.index as index_mod
from retrieval.errors import CorpusError, IndexBusyError, IndexMismatchError, IndexMissingError
from retrieval.index import LoreIndex, read_current
from retrieval.integrity import CHECKSUMS, verify_checksums
from retrieval.rebuild import _prune, rebuild_index, rebuild_lock, use_generation
from retrieval.retrievers.hybrid import HybridRetriever
from tests.conftest import REPO

TOPICS = ["bridges and rivers", "bread and ovens", "bells in towers", "maps of the coast", "salt and ships",
          "lamps and oil", "wool and looms", "stone quarries", "honey and bees", "glass furnaces"]


def marker_corpus(root: Path, marker: str, n_docs: int = 10) -> Path:
    """n small documents; every chunk carries `marker`, so a hit tells which corpus (generation) it came from."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_docs):
        topic = TOPICS[i % len(TOPICS)]
        scope = "all" if i % 3 else "[npc-a]"
        (root / f"doc-{i:02d}.md").write_text(
            f"---\ntitle: Note {i} on {topic}\nkind: note\nnpc_scope: {scope}\nchapter: {1 + i % 3}\n---\n"
            f"# Note {i}\n\nEdition {marker}. This note is about {topic}. Entry {i} records that the {topic} "
            f"were counted {i + 3} times in the {marker} edition.\n\n## More\nEdition {marker}. The keepers of "
            f"{topic} met {i * 2 + 1} times.\n", encoding="utf-8")
    return root


def marker_of(text: str) -> str:
    return text.split("Edition ", 1)[1].split(".", 1)[0]


def check_whole(lore: LoreIndex, n_docs: int, on_disk: bool = True) -> str:
    """A loaded generation is one complete corpus: one marker, counts equal across manifest, FAISS, chunks, BM25 and
    (on_disk: while no rebuild may prune it) vectors.npy and checksums. Returns the marker."""
    markers = {marker_of(c.text) for c in lore.chunks}
    assert len(markers) == 1, markers
    counts = lore.manifest["counts"]
    assert counts["documents"] == len({c.doc for c in lore.chunks}) == n_docs
    assert counts["chunks"] == len(lore.chunks) == lore.index.ntotal == lore.lexical.n_docs
    assert len({c.id for c in lore.chunks}) == len(lore.chunks)
    if on_disk:
        assert np.load(lore.path / "vectors.npy").shape == (len(lore.chunks), lore.dim)
        assert verify_checksums(lore.path, lore.path.parents[1])
    return markers.pop()


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under root (the live generation, CURRENT, the older generations)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".rebuild.lock"}


# ---------------------------------------------------------------------------------------------- SIGKILL rebuilds

# Loads the embedder once (torch takes ~10 s to import), then forks one child per "go": the child rebuilds the
# index in a loop, alternating two corpora (each built twice), until the test SIGKILLs it. The parent reports the
# child's pid and its exit status; the child appends the number of finished rebuilds to a progress file.
# fork() copies only the calling thread: a lock another thread holds at that moment stays held in the child for
# ever. tqdm starts a monitor thread per progress bar that takes tqdm's lock every 10 s (loading the embedder draws
# bars, and the child's BM25 build draws more), so monitors are off and the zygote checks it has one Python thread
# before each fork. A child that still hangs dumps every thread's stack to stderr (pytest shows it) after 120 s.
ZYGOTE = r"""
import faulthandler, os, sys, threading, traceback
import tqdm
tqdm.tqdm.monitor_interval = 0
import torch
torch.set_num_threads(1)
from retrieval.embeddings import SentenceTransformerEmbedder
from retrieval.rebuild import rebuild_index
a, b, root, progress = sys.argv[1:5]
emb = SentenceTransformerEmbedder("builtin:all-minilm-l6-v2")
emb.encode(["warm up"])
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() != "go":
        break
    assert threading.active_count() == 1, threading.enumerate()
    pid = os.fork()
    if pid == 0:
        faulthandler.dump_traceback_later(120, exit=False)
        try:
            n = 0
            while True:  # a, a again (forced: all vectors reused, so all file work), b, b again, ...
                rebuild_index((a, a, b, b)[n % 4], root, emb, keep=2, force=n % 2 == 1)
                n += 1
                with open(progress, "a") as f:
                    f.write(f"{os.getpid()} {n}\n")
        except BaseException:
            traceback.print_exc()
            os._exit(1)
    print(pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print(status, flush=True)
"""


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")


def _until(condition, what: str, seconds: float = 300):
    """Poll `condition` until it holds; the deadline only turns a hang into a failure."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.001)


def _stop_holding_staging(pid: int, gens: Path) -> None:
    """SIGSTOP the child at a moment it holds a staging folder: seen while it is stopped, so it cannot have renamed
    the folder between the look and the kill."""
    def staging():
        return any(p.name.startswith(".staging-") for p in gens.iterdir())

    def caught():
        if not staging():
            return False
        os.kill(pid, signal.SIGSTOP)
        _until(lambda: _stopped(pid), "the child stopped")
        if staging():
            return True
        os.kill(pid, signal.SIGCONT)
        return False
    _until(caught, "the child held a staging folder")


def test_sigkill_during_rebuilds_never_breaks_the_index(tmp_path, embedder):
    """22 rebuilds killed with SIGKILL, in turn while the child holds a staging folder, after it has finished a
    rebuild, and after a random (seeded) delay: after each, the live generation opens and answers from one complete
    corpus, every visible generation passes its checksums, and a new rebuild runs at once (lock_timeout=0: a dead
    holder's lock is free) and cleans the dead run's leftovers."""
    kills, n_docs = 22, 6
    a, b = marker_corpus(tmp_path / "a", "alpha", n_docs), marker_corpus(tmp_path / "b", "beta", n_docs)
    root, progress = tmp_path / "index", tmp_path / "progress.txt"
    rebuild_index(a, root, embedder, keep=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    zygote = subprocess.Popen([sys.executable, "-c", ZYGOTE, str(a), str(b), str(root), str(progress)], cwd=REPO,
                              env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    rng = random.Random(1234)
    qvec = embedder.encode(["How often were the bells counted?"])[0]
    phases = {"staging": 0, "finished": 0, "random": 0}
    try:
        assert zygote.stdout.readline().strip() == "ready"
        for k in range(kills):
            zygote.stdin.write("go\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline())
            phase = ("staging", "finished", "random")[k % 3]
            if phase == "staging":  # random delays alone missed this phase in about 1 run of 3
                _stop_holding_staging(pid, root / "generations")
            elif phase == "finished":
                def finished():
                    assert Path(f"/proc/{pid}").exists(), f"kill {k}: the child died before a rebuild finished"
                    return progress.exists() and f"{pid} 1" in progress.read_text().splitlines()
                _until(finished, "a finished rebuild")
            else:
                time.sleep(rng.uniform(0.0, 0.8))
            os.kill(pid, signal.SIGKILL)
            status = int(zygote.stdout.readline())
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"kill {k}: child failed"

            lore = LoreIndex.open(root, embedder)
            marker = check_whole(lore, n_docs)
            hits = HybridRetriever().search(lore, "bells counted", qvec, 5)
            assert len(hits) == 5 and {marker_of(h.chunk.text) for h in hits} == {marker}
            for gen in (root / "generations").iterdir():  # a visible generation is always a whole one
                if not gen.name.startswith("."):
                    assert verify_checksums(gen, root), gen

            stats = rebuild_index(a if marker == "alpha" else b, root, embedder, keep=2, force=True, lock_timeout=0)
            assert stats.embedded == 0  # the live vectors were whole: reused
            if phase == "staging":  # the dead child's staging folder is what this rebuild cleaned
                assert any(c.startswith(".staging-") for c in stats.extra["cleaned"]), stats.extra["cleaned"]
            phases[phase] += 1
            assert not [p for p in (root / "generations").iterdir() if p.name.startswith(".")]
            assert check_whole(LoreIndex.open(root, embedder), n_docs) == marker
    finally:
        zygote.stdin.close()
        zygote.kill()
        zygote.wait()
    assert phases == {"staging": 8, "finished": 7, "random": 7}


# A child forked from a process that has encoded takes tqdm's lock (sentence-transformers does, in every encode,
# bar or not) and is SIGKILLed holding it; a second child forked afterwards must still encode. tqdm's default lock
# is a semaphore shared across fork, so without a lock of its own the second child blocks for ever (a CI run of the
# test above hung so, after a random-delay kill). SIGALRM turns a hang into a failure.
HELD_PROGRESS_LOCK = r"""
import os, signal, time
import torch
torch.set_num_threads(1)
import tqdm
from retrieval.embeddings import SentenceTransformerEmbedder
emb = SentenceTransformerEmbedder("builtin:all-minilm-l6-v2")
emb.encode(["warm up"])
r, w = os.pipe()
holder = os.fork()
if holder == 0:
    tqdm.tqdm.get_lock().acquire()
    os.write(w, b"x")
    time.sleep(600)
    os._exit(0)
assert os.read(r, 1) == b"x"
os.kill(holder, signal.SIGKILL)
os.waitpid(holder, 0)
child = os.fork()
if child == 0:
    signal.alarm(60)
    emb.encode(["after a sibling was killed"])
    os._exit(0)
_, status = os.waitpid(child, 0)
print(status, flush=True)
"""


def test_a_sibling_killed_inside_the_progress_lock_does_not_block_encoding():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run([sys.executable, "-c", HELD_PROGRESS_LOCK], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    status = int(out.stdout.split()[-1])
    assert not os.WIFSIGNALED(status), f"the second child hung (signal {os.WTERMSIG(status)})"
    assert os.WEXITSTATUS(status) == 0


def test_stale_lock_of_a_killed_holder_does_not_block(tmp_path, embedder):
    corpus = marker_corpus(tmp_path / "a", "alpha", 3)
    root = tmp_path / "index"
    root.mkdir()
    script = ("import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); "
              "print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", script, str(root / ".rebuild.lock")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(IndexBusyError, match=r"\.rebuild\.lock: another rebuild or rollback .* lock_timeout"):
            rebuild_index(corpus, root, embedder, lock_timeout=0.2)
        assert not (root / "CURRENT").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (root / ".rebuild.lock").exists()  # the file stays; the flock died with its holder
    stats = rebuild_index(corpus, root, embedder, lock_timeout=0)
    assert LoreIndex.open(root, embedder).path.name == stats.generation


def test_concurrent_rebuilds_serialise(tmp_path, embedder):
    """A rebuild waits while another holds the lock (here: the test), then runs; two racing rebuilds both finish
    and leave one consistent live generation."""
    a, b = marker_corpus(tmp_path / "a", "alpha", 4), marker_corpus(tmp_path / "b", "beta", 4)
    root = tmp_path / "index"
    rebuild_index(a, root, embedder)
    done: list = []
    with rebuild_lock(root):
        t = threading.Thread(target=lambda: done.append(rebuild_index(b, root, embedder, lock_timeout=30)))
        t.start()
        time.sleep(0.7)
        assert t.is_alive() and not done  # waiting on the lock
        assert check_whole(LoreIndex.open(root, embedder), 4) == "alpha"
    t.join(30)
    assert done and check_whole(LoreIndex.open(root, embedder), 4) == "beta"

    results, errors = [], []

    def run(corpus):
        try:
            results.append(rebuild_index(corpus, root, embedder, force=True))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(c,)) for c in (a, b, a)]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    assert not errors and len({r.generation for r in results}) == 3
    check_whole(LoreIndex.open(root, embedder), 4)
    assert not [p for p in (root / "generations").iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------------- readers during swaps


def test_readers_see_whole_generations_while_rebuilds_swap(tmp_path, embedder):
    """Reader threads re-open via CURRENT in a loop while a writer rebuilds alternating corpora with keep=1 (every
    old generation is pruned at once): no errors, and every answer comes from one generation's corpus."""
    n_docs = 4
    a, b = marker_corpus(tmp_path / "a", "alpha", n_docs), marker_corpus(tmp_path / "b", "beta", n_docs)
    root = tmp_path / "index"
    rebuild_index(a, root, embedder, keep=1)
    qvec = embedder.encode(["Who counted the salt ships?"])[0]
    stop, errors, seen, opens = threading.Event(), [], set(), [0]

    def reader():
        while not stop.is_set():
            try:
                lore = LoreIndex.open(root, embedder)
                marker = check_whole(lore, n_docs, on_disk=False)  # the files may be pruned by now
                for hits in (lore.search_vector(qvec, 4), HybridRetriever().search(lore, "salt ships", qvec, 4)):
                    assert {marker_of(h.chunk.text) for h in hits} == {marker}
                seen.add(marker)
                opens[0] += 1
                time.sleep(0.01)
            except BaseException as e:
                import traceback

                errors.append("".join(traceback.format_exception(e)))
                return

    readers = [threading.Thread(target=reader) for _ in range(2)]
    [t.start() for t in readers]
    try:
        for i in range(6):
            rebuild_index((b, a)[i % 2], root, embedder, keep=1)
    finally:
        stop.set()
        [t.join(30) for t in readers]
    assert not errors, errors[0]
    assert seen == {"alpha", "beta"} and opens[0] >= 6


def test_open_rereads_current_when_its_generation_is_pruned_midway(tmp_path, embedder, monkeypatch):
    """The race the threads above can hit: a reader reads CURRENT, then a rebuild makes another generation live and
    prunes the one the reader is opening. `LoreIndex.open` reads CURRENT again instead of failing."""
    root = tmp_path / "index"
    old = rebuild_index(marker_corpus(tmp_path / "a", "alpha", 3), root, embedder).generation
    new = rebuild_index(marker_corpus(tmp_path / "b", "beta", 3), root, embedder).generation
    use_generation(root, old)
    real, calls = index_mod.read_current, []

    def read_then_swap_and_prune(r):
        gen = real(r)
        if not calls:  # between this read and the opening of `gen`, the writer swaps CURRENT and prunes `gen`
            use_generation(root, new)
            _prune(root / "generations", keep=1, live=new)
        calls.append(gen.name)
        return gen

    monkeypatch.setattr(index_mod, "read_current", read_then_swap_and_prune)
    lore = LoreIndex.open(root, embedder)
    assert calls == [old, new] and lore.path.name == new and check_whole(lore, 3) == "beta"
    assert not (root / "generations" / old).exists()


# ------------------------------------------------------------------------------------ corrupt index files


@pytest.fixture(scope="module")
def template(tmp_path_factory, embedder):
    """One built index (tiny corpus) copied per test, so each corruption starts from a good generation."""
    from tests.conftest import write_corpus

    base = tmp_path_factory.mktemp("template")
    corpus = write_corpus(base / "lore")
    rebuild_index(corpus, base / "index", embedder)
    return base


@pytest.fixture
def good(template, tmp_path):
    shutil.copytree(template / "index", tmp_path / "index")
    shutil.copytree(template / "lore", tmp_path / "lore")
    return tmp_path / "index", tmp_path / "lore"


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(b"\x00\xffnot what this file should be\x93NUMPY{]" * 3)
    elif how == "flip":
        i = len(data) * 2 // 3
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x5A]) + data[i + 1:])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "delete":
        path.unlink()


def _gen_files(root: Path) -> list[str]:
    gen = read_current(root)
    return sorted(p.relative_to(gen).as_posix() for p in gen.rglob("*") if p.is_file() and p.name != CHECKSUMS)


def _expect_clear_error(root: Path, embedder, names: str) -> str:
    with pytest.raises((IndexMismatchError, IndexMissingError)) as e:
        LoreIndex.open(root, embedder)
    msg = str(e.value)
    assert names in msg and "eterna index rebuild" in msg and "eterna index rollback" in msg, msg
    return msg


@pytest.mark.parametrize("how", ["truncate", "garbage", "flip", "empty", "delete"])
def test_every_damaged_file_gives_a_clear_error(good, embedder, how):
    root, _ = good
    files = _gen_files(root)
    assert {"manifest.json", "chunks.jsonl", "index.faiss", "vectors.npy", "bm25/eterna_lexical.json"} <= set(files)
    clean = root.parent / "clean"
    shutil.copytree(root, clean)
    for rel in files:  # one file at a time, from a clean copy
        shutil.rmtree(root)
        shutil.copytree(clean, root)
        _damage(read_current(root) / rel, how)
        _expect_clear_error(root, embedder, rel.split("/")[-1] if how != "delete" or rel != "manifest.json"
                            else "missing or incomplete")


@pytest.mark.parametrize("how", ["truncate", "garbage"])
def test_damaged_files_without_checksums_still_give_clear_errors(good, embedder, how):
    """A generation from before checksums.json: the parsers' own failures are translated, naming the file."""
    root, _ = good
    (read_current(root) / CHECKSUMS).unlink()
    LoreIndex.open(root, embedder)
    clean = root.parent / "clean"
    shutil.copytree(root, clean)
    for rel in _gen_files(root):
        shutil.rmtree(root)
        shutil.copytree(clean, root)
        _damage(read_current(root) / rel, how)
        try:
            LoreIndex.open(root, embedder)
        except (IndexMismatchError, IndexMissingError) as e:
            top = rel.split("/")[0]
            assert top in str(e) and "eterna index rebuild" in str(e), (rel, str(e))
        else:  # only bm25s's own parameter file may be damaged unnoticed without checksums (it has defaults)
            assert rel.startswith("bm25/"), rel


def test_damaged_checksums_file_is_a_clear_error(good, embedder):
    root, _ = good
    _damage(read_current(root) / CHECKSUMS, "truncate")
    _expect_clear_error(root, embedder, CHECKSUMS)


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", b"", b"  \n", b"no-such-generation\n", b"../x\n",
                                     b"../../etc\n", b"/etc\n", b"a/b\n", b".staging-x\n", b"gen\nother\n"])
def test_corrupt_current_is_a_clear_error(good, embedder, content):
    root, _ = good
    live = read_current(root)
    shutil.copytree(live, root / "x")  # `generations/../x` exists and is a whole generation: still refused
    (root / "CURRENT").write_bytes(content)
    with pytest.raises((IndexMismatchError, IndexMissingError)) as e:
        LoreIndex.open(root, embedder)
    msg = str(e.value)
    assert "CURRENT" in msg and "eterna index rebuild" in msg, msg


@pytest.mark.parametrize("target", ["CURRENT", "manifest.json", "chunks.jsonl", "index.faiss", "vectors.npy",
                                    "bm25/eterna_lexical.json"])
def test_rebuild_over_a_corrupt_live_generation_reembeds(good, embedder, target):
    root, corpus = good
    before = LoreIndex.open(root, embedder)
    path = root / "CURRENT" if target == "CURRENT" else before.path / target
    _damage(path, "garbage")
    stats = rebuild_index(corpus, root, embedder)  # same corpus: without the damage this would be `unchanged`
    assert not stats.extra["unchanged"] and stats.embedded == stats.chunks == len(before.chunks)
    after = LoreIndex.open(root, embedder)
    assert after.path.name == stats.generation != before.path.name
    assert after.search("Who built the clock with thirteen hours?", embedder, k=1)[0].chunk.doc == "clock-room"


def test_embedder_with_another_dimension_is_refused(tmp_path, good, embedder):
    """A real second embedder (MiniLM + a Dense projection to 64 dims): it cannot open the 384-dim index; a rebuild
    with it re-embeds everything, and then MiniLM is refused."""
    from sentence_transformers import SentenceTransformer, models

    from retrieval.embeddings import SentenceTransformerEmbedder

    root, corpus = good
    base = embedder.model
    small = SentenceTransformer(modules=[base[0], base[1], models.Dense(384, 64), models.Normalize()], device="cpu")
    small.save(str(tmp_path / "small"))
    other = SentenceTransformerEmbedder(str(tmp_path / "small"))
    assert other.dim == 64
    with pytest.raises(IndexMismatchError, match=r"dim 384.*dim 64.*eterna index rebuild"):
        LoreIndex.open(root, other)
    stats = rebuild_index(corpus, root, other)
    assert stats.embedded == stats.chunks and LoreIndex.open(root, other).dim == 64
    with pytest.raises(IndexMismatchError, match=r"dim 64.*dim 384"):
        LoreIndex.open(root, embedder)


# ------------------------------------------------------------------------------------------ malformed lore

FRONT = "---\ntitle: Bad\nkind: room\nnpc_scope: all\nchapter: 1\n---\n"


@pytest.mark.parametrize("name, data, reason", [
    ("nofront.md", b"# Just a heading\nText.\n", "missing front matter"),
    ("badyaml.md", b"---\ntitle: [unclosed\nkind: room\n---\nText.\n", "invalid YAML"),
    ("nokeys.md", b"---\ntitle: Bad\nkind: room\n---\nText.\n", "lacks npc_scope, chapter"),
    ("latin1.md", FRONT.encode() + "Caf\u00e9 cr\u00e8me.\n".encode("latin-1"), "not UTF-8 text"),
    ("empty.md", b"", "empty file"),
    ("blank.md", b"  \n\n \n", "empty file"),
    ("nobody.md", FRONT.encode(), "no text after the front matter"),
    ("giant.md", FRONT.encode() + b"word " * 1000, "over the limit of 2000 bytes per document"),
])
def test_malformed_lore_is_rejected_and_the_live_generation_untouched(good, embedder, name, data, reason):
    root, corpus = good
    before = snapshot(root)
    (corpus / name).write_bytes(data)
    with pytest.raises(CorpusError, match=reason) as e:
        rebuild_index(corpus, root, embedder, max_doc_bytes=2000)
    assert str(corpus / name) in str(e.value)
    assert snapshot(root) == before  # CURRENT, every generation file: byte for byte


def test_default_size_limit_is_5_mb(good, embedder):
    root, corpus = good
    before = snapshot(root)
    (corpus / "dump.md").write_bytes(FRONT.encode() + b"x" * (5 * 1024 * 1024))
    with pytest.raises(CorpusError, match=r"dump.md: \d+ bytes, over the limit of 5242880 bytes per document; "
                                          "split it"):
        rebuild_index(corpus, root, embedder)
    assert snapshot(root) == before
