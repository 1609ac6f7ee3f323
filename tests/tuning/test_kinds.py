"""Artifact kinds (tuning/kinds.py) on real tiny artifacts trained through `train_sft`: each folder is recognised as
its kind, and each kind says whether it merges into its base and whether llama.cpp can apply it as a GGUF LoRA."""

import pytest

from retrieval.errors import AdapterError, ConfigError
from tuning.export import lora_gguf_support
from tuning.kinds import KINDS, ArtifactKind, BottleneckKind, FullKind, PeftKind, kind_for_dir, kind_of
from tuning.merge import mergeable
from tuning.methods import get_method
from tuning.sft import SFTRecipe, train_sft

# method -> (kind, mergeable reason, gguf reason): None means it can
EXPECTED = {
    "lora": ("adapter", None, None),
    "prompt": ("adapter", "peft_type PROMPT_TUNING adds virtual tokens, not weights",
               "peft_type PROMPT_TUNING (llama.cpp applies plain LoRA only)"),
    "adapter": ("bottleneck", "bottleneck adapters add modules between layers",
                "a bottleneck adapter (llama.cpp has no adapter modules between layers)"),
    "full": ("full", "it is a full fine-tune, already a whole checkpoint", "a full fine-tune"),
}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, tiny_llm_dir):
    import json

    from tests.fixtures_data import STYLE

    root = tmp_path_factory.mktemp("kinds")
    data = root / "style.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in STYLE), encoding="utf-8")
    out = {}
    for method in EXPECTED:
        params = {"r": 4} if method in ("lora", "adapter") else {}
        manifest = train_sft(tiny_llm_dir, data, root / method,
                             SFTRecipe(method=method, params=params, max_steps=1, batch_size=8))
        out[method] = (root / method, manifest)
    return out


def test_registry_lists_the_three_kinds_and_every_method_names_one():
    assert KINDS.names() == ["adapter", "bottleneck", "full"]
    assert [type(kind_of(n)) for n in KINDS.names()] == [PeftKind, BottleneckKind, FullKind]
    assert all(kind_of(n).name == n for n in KINDS.names())
    for method in ("lora", "dora", "qlora", "ia3", "prompt", "prefix", "adapter", "full"):
        kind_of(get_method(method).kind)  # no method names a kind that does not exist
    assert [k.name for k in KINDS.values() if k.attachable] == ["bottleneck", "adapter"]


def test_unknown_kind_is_named_with_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown artifact kind 'lorax'; available: adapter, bottleneck, full"):
        kind_of("lorax")


@pytest.mark.parametrize("method", list(EXPECTED))
def test_each_kind_knows_its_folders_and_what_they_convert_to(method, artifacts):
    path, manifest = artifacts[method]
    kind_name, merge_reason, gguf_reason = EXPECTED[method]
    assert manifest["kind"] == kind_name
    kind = kind_for_dir(path)
    assert kind is kind_of(kind_name) and kind_for_dir(path, manifest) is kind
    for reason, expected in ((kind.mergeable(path), merge_reason), (kind.gguf_support(path), gguf_reason)):
        assert reason == expected if expected is None else expected in reason
    assert mergeable(path, manifest) == kind.mergeable(path)  # the public functions ask the kind
    assert lora_gguf_support(path, {"model_type": "llama"}) == kind.gguf_support(path)
    if kind.weights:  # the file float16 saving and shipping halve
        assert (path / kind.weights).is_file()


def test_a_full_fine_tune_is_not_an_adapter(artifacts, tiny_llm_dir):
    from tuning.base import load_base

    path, _ = artifacts["full"]
    full = kind_of("full")
    assert not full.attachable and full.weights is None
    with pytest.raises(AdapterError, match="is a full fine-tune, not an adapter; DPO continues adapters only"):
        full.dpo_start(tiny_llm_dir, path)
    with pytest.raises(ConfigError, match="DPO recipe: method 'full' is not supported"):
        full.check_dpo("full")
    with pytest.raises(AdapterError, match="not an adapter; serve it as models.llm"):
        full.attach(load_base(tiny_llm_dir)[0], "x", path)


def test_a_new_kind_is_one_class(tmp_path):
    class MarkedKind(ArtifactKind):  # a kind whose folders hold a marker file, and nothing converts
        name = "marked"

        def holds(self, path, manifest):
            return (path / "marked.json").is_file()

        def mergeable(self, path):
            return "marked artifacts do not merge"

        def gguf_support(self, path):
            return "marked artifacts stay marked"

    (tmp_path / "marked.json").write_text("{}", encoding="utf-8")
    KINDS.add("marked", MarkedKind())
    try:
        assert kind_for_dir(tmp_path) is kind_of("marked")
        assert lora_gguf_support(tmp_path, {"model_type": "llama"}) == "marked artifacts stay marked"
    finally:
        del KINDS["marked"]
    assert kind_for_dir(tmp_path) is kind_of("adapter")  # a folder no kind claims is read as PEFT
