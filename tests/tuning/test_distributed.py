"""Beyond one machine: `eterna train sft` under `accelerate launch` as two CPU processes (DDP over gloo) publishes one
artifact from the main process; the shipped accelerate configs and recipes validate, and the recipes' LoRA configs
apply to 8B / 1B Llama shapes built on the meta device (no download, no memory)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, write_project
from tests.fixtures_data import STYLE

ACCELERATE = Path(sys.executable).with_name("accelerate")
# Llama-3.1-8B and Llama-3.2-1B shapes, written out (no hub access)
LLAMA_8B = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
                tie_word_embeddings=False)
LLAMA_1B = dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
                tie_word_embeddings=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_training_publishes_once(tiny_llm_dir, tmp_path):
    config = write_project(tmp_path / "proj", str(tiny_llm_dir))
    data = tmp_path / "style.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in STYLE), encoding="utf-8")
    out = tmp_path / "proj" / "adapters" / "w"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    # on CPUs, --multi_gpu selects torchrun; the recipe's device cpu makes the trainer use gloo
    cmd = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           "-m", "app", "--config", str(config), "train", "sft", "--npc", "warden", "--data", str(data),
           "--out", str(out), "--max-steps", "3", "--save-steps", "2", "--json"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1  # only the main process reports
    manifest = json.loads(lines[0])
    assert manifest["processes"] == 2 and manifest["metrics"]["steps"] == 3
    assert (out / "adapter_model.safetensors").is_file() and (out / "loss.png").is_file()
    assert json.loads((out / "eterna_adapter.json").read_text())["processes"] == 2
    leftovers = [p.name for p in out.parent.iterdir() if p.name != "w"]
    assert leftovers == []  # no second artifact, no staging folder, checkpoints removed after the publish


@pytest.mark.parametrize("name,kind", [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("deepspeed-zero3", "DEEPSPEED")])
def test_accelerate_configs_validate(name, kind):
    import yaml
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    path = REPO / "configs" / "accelerate" / f"{name}.yaml"
    cfg = ClusterConfig.from_yaml_file(str(path))  # unknown top-level keys raise
    assert cfg.distributed_type.value == kind
    parser = launch_command_parser()
    options = {a.dest for a in parser._actions}
    raw = yaml.safe_load(path.read_text())
    nested = {**raw.get("fsdp_config", {}), **raw.get("deepspeed_config", {})}
    assert set(nested) <= options, set(nested) - options  # every nested key is an option `accelerate launch` knows
    args, _, _ = _validate_launch_command(parser.parse_args(["--config_file", str(path), "-m", "app"]))
    assert (args.use_fsdp, args.use_deepspeed, args.multi_gpu) == (kind == "FSDP", kind == "DEEPSPEED",
                                                                   kind == "MULTI_GPU")
    if kind == "DEEPSPEED":
        assert int(args.zero_stage) == 3


@pytest.mark.parametrize("recipe_file,shape,lora_params", [
    ("director-8b-qlora.yaml", LLAMA_8B, (41_000_000, 43_000_000)),
    ("npc-1b-lora.yaml", LLAMA_1B, (11_000_000, 12_000_000)),
])
def test_recipes_load_and_apply_to_their_model_sizes(recipe_file, shape, lora_params):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    from tuning.methods import get_method
    from tuning.recipes import load_recipe
    from tuning.sft import SFTRecipe

    recipe = load_recipe(REPO / "configs" / "recipes" / recipe_file)
    assert isinstance(recipe, SFTRecipe) and recipe.save_steps > 0 and recipe.device == "auto"
    method = get_method(recipe.method)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(LlamaConfig(**shape))
    total = sum(p.numel() for p in model.parameters())
    assert (7.9e9 if shape is LLAMA_8B else 1.2e9) < total < (8.1e9 if shape is LLAMA_8B else 1.3e9)
    peft_model = get_peft_model(model, method.build(method.parse(recipe.params)))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert lora_params[0] < trainable < lora_params[1], trainable
    assert all(p.device.type == "meta" for p in peft_model.parameters())


def test_bad_recipe_file_names_file_and_field(tmp_path):
    from retrieval.errors import ConfigError
    from tuning.recipes import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text("method: lora\nsave_step: 10\n")
    with pytest.raises(ConfigError, match=r"r\.yaml: save_step: Extra inputs are not permitted"):
        load_recipe(path)
    path.write_text("method: lora\nparams: {rank: 4}\n")
    with pytest.raises(ConfigError, match=r"r\.yaml: method 'lora': params\.rank"):
        load_recipe(path)
