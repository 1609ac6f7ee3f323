"""Interval checkpoints and resume on the tiny Llama: a run SIGKILLed after a checkpoint, then resumed, ends where an
uninterrupted run ends; a checkpoint of other data or another recipe is refused; loss.png is a real PNG."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from retrieval.errors import ConfigError
from tests.conftest import REPO
from tuning.adapters import ADAPTER_MANIFEST
from tuning.checkpoints import DONE_FILE, RUN_FILE, checkpoint_dir, complete_checkpoints
from tuning.sft import SFTRecipe, train_sft

# 8 examples, batch 2: 4 steps an epoch, so checkpoint-2 is mid-epoch and resuming must skip the seen batches
RECIPE = dict(max_steps=8, batch_size=2, learning_rate=5e-3, logging_steps=1, save_steps=2, seed=3,
              params={"r": 4, "alpha": 8})

KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    import torch
    from transformers import TrainerCallback
    from tuning.sft import SFTRecipe, train_sft

    torch.set_num_threads(2)

    class DieAtStep4(TrainerCallback):  # runs before the completion marker: checkpoint-4 stays incomplete
        def on_save(self, args, state, control, **kw):
            if state.global_step == 4:
                os.kill(os.getpid(), signal.SIGKILL)

    train_sft(sys.argv[1], sys.argv[2], sys.argv[3], SFTRecipe.model_validate_json(sys.argv[4]),
              system="Be brief.", callbacks=[DieAtStep4()])
""")


def _last_loss(out):
    return json.loads((out / ADAPTER_MANIFEST).read_text())["metrics"]["last_loss"]


def test_killed_run_resumes_to_the_same_loss(tiny_llm_dir, style_file, tmp_path):
    torch.set_num_threads(2)
    recipe = SFTRecipe(**RECIPE)
    straight = tmp_path / "straight"
    train_sft(tiny_llm_dir, style_file, straight, recipe, system="Be brief.")
    assert not checkpoint_dir(straight).exists()  # removed after the publish

    out = tmp_path / "resumed"
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", KILLED_RUN, str(tiny_llm_dir), str(style_file), str(out),
                           recipe.model_dump_json()], cwd=REPO, env=env, capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert not out.exists()
    ckpts = checkpoint_dir(out)
    assert (ckpts / "checkpoint-4").is_dir() and not (ckpts / "checkpoint-4" / DONE_FILE).exists()
    assert [p.name for p in complete_checkpoints(ckpts)] == ["checkpoint-2"]

    with pytest.raises(ConfigError, match=r"recipe\.learning_rate differ.*delete .*without --resume"):
        train_sft(tiny_llm_dir, style_file, out, recipe.model_copy(update={"learning_rate": 1e-3}),
                  system="Be brief.", resume=True)
    with pytest.raises(ConfigError, match=r"system differ"):
        train_sft(tiny_llm_dir, style_file, out, recipe, system="Be long.", resume=True)
    assert (ckpts / RUN_FILE).is_file()  # a refused resume leaves the checkpoints alone

    manifest = train_sft(tiny_llm_dir, style_file, out, recipe, system="Be brief.", resume=True,
                         keep_checkpoints=True)
    assert manifest["resumed_from"] == "checkpoint-2" and manifest["metrics"]["steps"] == 8
    a, b = _last_loss(straight), _last_loss(out)
    assert abs(a - b) <= 0.01 * abs(a), (a, b)
    wa, wb = (load_file(str(p / "adapter_model.safetensors")) for p in (straight, out))
    assert all(torch.allclose(wa[k], wb[k], atol=1e-4) for k in wa)
    assert [p.name for p in complete_checkpoints(ckpts)] == ["checkpoint-6", "checkpoint-8"]  # kept on request


def test_loss_curve_png_is_named_in_the_manifest(tiny_llm_dir, style_file, tmp_path):
    out = tmp_path / "a"
    manifest = train_sft(tiny_llm_dir, style_file, out, SFTRecipe(max_steps=3, batch_size=4, logging_steps=1))
    assert manifest["loss_curve"] == "loss.png"
    png = (out / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    from PIL import Image

    with Image.open(out / "loss.png") as img:
        img.verify()
        assert img.size == (600, 350)
