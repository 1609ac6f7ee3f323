"""`eterna adapters export --format peft`: the shipped adapter as the PEFT folder vLLM and SGLang load, checked
against vLLM's limits, with the server command lines. (`--format gguf` runs on the real base in
tests/slow/test_remote_engine.py.)"""

import json
import shutil

import pytest

from app.cli import main
from tests.conftest import REPO

ARCHIVIST = REPO / "corpora" / "library" / "adapters" / "archivist"
CONFIG = str(REPO / "configs" / "eterna.yaml")


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_peft_export_of_a_shipped_adapter(capsys, tmp_path):
    rc, out, err = run(capsys, "--config", CONFIG, "adapters", "export", "--npc", "archivist", "--format", "peft",
                       "--out", str(tmp_path / "out"), "--json")
    assert rc == 0, err
    got = json.loads(out)
    folder = tmp_path / "out" / "archivist"
    assert got["path"] == str(folder) and got["base"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    peft = json.loads((folder / "adapter_config.json").read_text())
    assert peft["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and peft["r"] == 8
    assert (folder / "adapter_model.safetensors").is_file() and (folder / "eterna_adapter.json").is_file()
    vllm = next(c for c in got["commands"] if c.startswith("vllm serve"))
    assert f"--lora-modules archivist={folder}" in vllm and "--max-lora-rank 8" in vllm
    assert any(c.startswith("python -m sglang.launch_server") for c in got["commands"])


@pytest.mark.parametrize("change,why", [({"r": 1024}, "rank r=1024: vLLM serves LoRA ranks up to 512"),
                                        ({"target_modules": ["q_proj", "embed_tokens"]}, "['embed_tokens']"),
                                        ({"use_dora": True}, "with DoRA")])
def test_peft_export_refuses_what_vllm_cannot_load(capsys, tmp_path, change, why):
    bad = tmp_path / "bad"
    shutil.copytree(ARCHIVIST, bad)
    cfg = json.loads((bad / "adapter_config.json").read_text())
    (bad / "adapter_config.json").write_text(json.dumps({**cfg, **change}))
    rc, _, err = run(capsys, "--config", CONFIG, "adapters", "export", "--npc", "archivist", "--adapter", str(bad),
                     "--format", "peft", "--out", str(tmp_path / "out"))
    assert rc != 0 and "not exported for vLLM" in err and why in err
    assert not (tmp_path / "out").exists()


def test_an_npc_without_adapter_is_a_clear_error(capsys, tmp_path):
    rc, _, err = run(capsys, "--config", str(REPO / "configs" / "kestrel.yaml"), "adapters", "export", "--npc",
                     "nobody", "--format", "peft", "--out", str(tmp_path / "out"))
    assert rc != 0 and "nobody" in err
