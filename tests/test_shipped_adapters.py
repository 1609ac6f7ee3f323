"""The default cast ships with trained voice adapters, and they still match what they were trained on: the style set
(data hash), the system prompt the config builds now, the recipe `make adapters` uses, the default base model."""

import pytest
from safetensors import safe_open

from app.config import Cast, EternaConfig
from app.prompt import system_prompt
from app.validate import adapter_problems
from tests.conftest import REPO
from tuning.adapters import read_adapter_manifest
from tuning.base import model_fingerprint, prepared_checkpoint
from tuning.data import data_fingerprint
from tuning.methods import get_method
from tuning.sft import SFTRecipe

CFG = EternaConfig.load(REPO / "configs" / "eterna.yaml")
CAST = Cast.load(CFG.paths.npcs, CFG.world)
SHIPPED = [n for n in CAST.npcs if n.adapter is not None]


def test_every_character_of_the_default_cast_speaks_through_a_shipped_adapter():
    assert [n.id for n in SHIPPED] == [n.id for n in CAST.npcs]
    for npc in SHIPPED:  # inside the project, beside the world's data, not in the .eterna work folder
        assert npc.adapter == (REPO / "corpora" / "library" / "adapters" / npc.id).resolve()


@pytest.mark.parametrize("npc", SHIPPED, ids=lambda n: n.id)
def test_shipped_manifest_matches_the_data_and_the_prompt(npc):
    manifest = read_adapter_manifest(npc.adapter)
    assert manifest["npc"] == npc.id and manifest["built_by"] == "eterna train sft"
    assert manifest["data"]["sha256"] == data_fingerprint(CFG.paths.style / f"{npc.id}.jsonl"), \
        f"{npc.id}: the style set changed since its adapter was trained; `make adapters ship-adapters`"
    assert manifest["system"] == system_prompt(npc, CFG.world, CFG.prompts), \
        f"{npc.id}: the persona prompt changed since its adapter was trained; `make adapters ship-adapters`"
    assert adapter_problems(CFG, Cast(npcs=[npc])) == {npc.id: []}


@pytest.mark.parametrize("npc", SHIPPED, ids=lambda n: n.id)
def test_shipped_adapter_was_trained_with_the_default_recipe(npc):
    """`make adapters` (`eterna train sft --npc ID`, default recipe) would rebuild it from the same data."""
    recipe = read_adapter_manifest(npc.adapter)["recipe"]
    default = SFTRecipe().model_dump()
    params = get_method(default["method"]).parse(default["params"]).model_dump()
    flat = {**{k: v for k, v in default.items() if k != "params"}, **params}
    recorded = {**{k: v for k, v in recipe.items() if k != "params"}, **recipe.get("params", {})}
    if flat["bf16"] == "auto" and recorded.get("bf16") is True:  # trained on AVX-512 BF16, where `auto` means on
        recorded["bf16"] = "auto"
    assert {k: v for k, v in recorded.items() if flat.get(k) != v} == {}
    # recipe fields added after training must keep defaults that do not change what trains on this data (checkpoint
    # interval, device placement, over-long policy, saved dtype; the schedule's default is the cosine they trained
    # with, and checkpointing's default is off for LoRA, as they trained)
    assert set(flat) - set(recorded) <= {"overlong", "save_dtype", "save_steps", "device", "lr_scheduler",
                                         "gradient_checkpointing"}
    assert SFTRecipe().lr_scheduler == "cosine" and SFTRecipe().gradient_checkpointing is None


@pytest.mark.parametrize("npc", SHIPPED, ids=lambda n: n.id)
def test_shipped_weights_are_float16_and_small(npc):
    manifest = read_adapter_manifest(npc.adapter)
    weights = npc.adapter / "adapter_model.safetensors"
    with safe_open(str(weights), framework="pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
    assert manifest["shipped"]["dtype"] == "float16" and manifest["shipped"]["trained_dtype"] == "float32"
    assert manifest["shipped"]["bytes"] == weights.stat().st_size < 5_500_000
    assert sorted(p.name for p in npc.adapter.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                             "eterna_adapter.json"]


def test_shipped_adapters_were_trained_on_the_default_base_model():
    checkpoint = prepared_checkpoint(CFG.models.llm, CFG.models.cache_dir)
    if checkpoint is None:
        pytest.skip(f"{CFG.models.llm} is not prepared in {CFG.models.cache_dir} (`make models`)")
    fingerprint = model_fingerprint(checkpoint)
    assert {read_adapter_manifest(n.adapter)["base"]["fingerprint"] for n in SHIPPED} == {fingerprint}


def test_base_fingerprint_ignores_how_a_conversion_wrote_its_configs(tmp_path, tiny_llm_dir):
    """Two conversions of the same weights differ in loader flags and library versions only: same base fingerprint
    (otherwise a fresh clone's converted model would refuse every shipped adapter)."""
    import json
    import shutil

    from tuning.base import model_fingerprint

    other = tmp_path / "again"
    shutil.copytree(tiny_llm_dir, other)
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "transformers_version": "9.9.9"}, indent=1))
    tok = other / "tokenizer_config.json"
    if tok.is_file():
        tok.write_text(json.dumps({**json.loads(tok.read_text()), "local_files_only": True}))
    assert model_fingerprint(other) == model_fingerprint(tiny_llm_dir)
    (other / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 7}))
    assert model_fingerprint(other) != model_fingerprint(tiny_llm_dir)


def test_no_shipped_file_holds_a_machine_path():
    """Manifests and PEFT configs name their base by builtin id, fingerprint and hub id, and their data by a
    project-relative path: nothing of the machine that trained them (issue 18)."""
    import json

    bad = []
    for f in sorted((REPO / "corpora").rglob("*.json")):
        def walk(v, where):
            if isinstance(v, dict):
                for k, x in v.items():
                    walk(x, f"{where}.{k}")
            elif isinstance(v, list):
                for i, x in enumerate(v):
                    walk(x, f"{where}[{i}]")
            elif isinstance(v, str) and (v.startswith("/") or v[1:3] == ":\\"):
                bad.append(f"{f.relative_to(REPO)}:{where} = {v}")
        walk(json.loads(f.read_text(encoding="utf-8")), "")
    assert not bad, bad
    for npc in SHIPPED:
        manifest = read_adapter_manifest(npc.adapter)
        assert "path" not in manifest["base"] and manifest["base"]["spec"] == "builtin:smollm2-135m-instruct"
        assert manifest["base"]["hub_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
        peft_cfg = json.loads((npc.adapter / "adapter_config.json").read_text(encoding="utf-8"))
        assert peft_cfg["base_model_name_or_path"] == manifest["base"]["hub_id"]
