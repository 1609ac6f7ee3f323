"""Artifact kinds: what a trained method leaves on disk, and everything that depends on it. One class per kind.

    kind = kind_of(method.kind)                  # "adapter" | "bottleneck" | "full"; unknown: ConfigError
    kind.prepare(model, params)                  # before training, on the loaded base
    kind.save(model, tok, staged, cfg)           # the trained weights into a staging folder
    kind = kind_for_dir(path, manifest)          # the kind of a folder on disk
    model = kind.attach(model, "guard", path)    # serve it next to others; select it with tuning.adapters.use_adapter
    kind.mergeable(path)                         # None, or why not; kind.gguf_support(path) likewise
    kind.check_dpo(method); kind.dpo_reference(base_dir)  # DPO of a fresh artifact: refused, or its reference
    kind.dpo_start(base_dir, path)               # (policy, tokenizer, reference model or None) continuing it

- PeftKind ("adapter"): a PEFT folder (adapter_config.json + adapter_model.safetensors); LoRA, DoRA, IA3, soft
  prompts, prefixes. PEFT wraps the model (the trainer does it from the method's peft_config).
- BottleneckKind ("bottleneck"): tuning/bottleneck.py's folder; the blocks are hooked into the model itself.
- FullKind ("full"): a whole checkpoint (config, safetensors, tokenizer); served as models.llm, not as an adapter.

A new kind is one class here, registered with `KINDS.add`; a method names it in `tuning.methods.register(kind=...)`.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from retrieval.errors import AdapterError, ConfigError
from retrieval.registry import Registry

TRAINED = "default"  # the name of the adapter being trained (PEFT's default adapter name)


class ArtifactKind:
    """One kind of trained artifact. Subclasses set `name` and `weights` and implement the methods that raise here."""

    name: str
    weights: str | None = None  # the safetensors file of the trained weights, halved by save_dtype float16 and by
    # shipping; None: a whole checkpoint, saved as trained
    attachable: bool = False  # served next to the base, selected per forward pass (tuning.adapters.use_adapter)

    def holds(self, path: Path, manifest: dict | None) -> bool:
        """Whether the folder at `path` (with its manifest, when read) is an artifact of this kind."""
        raise NotImplementedError

    # --- training -----------------------------------------------------------------------------------------------
    def prepare(self, model, params) -> None:
        """Make the loaded base trainable for this kind (the trainer wraps PEFT models itself)."""

    def save(self, model, tok, staged: Path, cfg: dict | None) -> None:
        """Write the trained weights (the adapter named TRAINED, or the whole model) into `staged`."""
        raise NotImplementedError

    # --- serving ------------------------------------------------------------------------------------------------
    def attach(self, model, name: str, path: Path):
        """Load the artifact at `path` as `name` onto model; returns the model to use from now on."""
        raise AdapterError(f"{path}: a {self.name} artifact is not an adapter; serve it as models.llm")

    def attached(self, model, name: str) -> bool:
        """Whether model carries an artifact of this kind named `name`."""
        return False

    @contextlib.contextmanager
    def active(self, model, name: str | None):
        """Run with this kind's `name` active (None: none of this kind's artifacts)."""
        yield

    # --- conversions --------------------------------------------------------------------------------------------
    def mergeable(self, path: Path) -> str | None:
        """None when the artifact can be merged into its base; otherwise why not."""
        raise NotImplementedError

    def merge(self, base_model, path: Path):
        """The base with the artifact at `path` folded into its weights (only when `mergeable` is None)."""
        raise AdapterError(f"{path}: cannot merge: {self.mergeable(path)}")

    def gguf_support(self, path: Path) -> str | None:
        """None when the artifact itself can become a GGUF LoRA for llama.cpp (tuning/export.py checks the base's
        architecture); otherwise the reason it cannot."""
        raise NotImplementedError

    # --- DPO ----------------------------------------------------------------------------------------------------
    def check_dpo(self, method: str) -> None:
        """ConfigError when DPO cannot train a fresh artifact of this kind with `method`."""

    def dpo_reference(self, base_dir: Path):
        """The reference model DPO needs for a fresh artifact, or None when TRL's own (adapters disabled) serves."""
        return None

    def dpo_start(self, base_dir: Path, path: Path):
        """(policy, tokenizer, reference model or None) continuing the artifact at `path` as TRAINED."""
        raise NotImplementedError


class PeftKind(ArtifactKind):
    name = "adapter"
    weights = "adapter_model.safetensors"
    attachable = True
    MERGEABLE = {"LORA", "IA3"}  # peft_types whose merge_and_unload folds weights (DoRA is LORA with use_dora)

    def holds(self, path, manifest):
        return (Path(path) / "adapter_config.json").is_file()

    def save(self, model, tok, staged, cfg):
        model.save_pretrained(staged, selected_adapters=[TRAINED])  # not DPO's frozen "ref" copy

    def attach(self, model, name, path):
        from peft import PeftModel

        if isinstance(model, PeftModel):
            model.load_adapter(str(path), adapter_name=name, is_trainable=False)
            return model
        return PeftModel.from_pretrained(model, str(path), adapter_name=name, is_trainable=False)

    def attached(self, model, name):
        from peft import PeftModel

        return isinstance(model, PeftModel) and name in model.peft_config

    @contextlib.contextmanager
    def active(self, model, name):
        from peft import PeftModel

        if not isinstance(model, PeftModel):
            yield
        elif name is None:
            with model.disable_adapter():
                yield
        else:
            model.set_adapter(name)
            yield

    def _config(self, path: Path) -> dict:
        return json.loads((Path(path) / "adapter_config.json").read_text(encoding="utf-8"))

    def mergeable(self, path):
        peft_type = self._config(path).get("peft_type")
        if peft_type not in self.MERGEABLE:
            return (f"peft_type {peft_type} adds virtual tokens, not weights; only LoRA, DoRA and IA3 merge (serve it "
                    "as an adapter)")
        return None

    def merge(self, base_model, path):
        from peft import PeftModel

        return PeftModel.from_pretrained(base_model, str(path), is_trainable=False).merge_and_unload()

    def gguf_support(self, path):
        cfg_path = Path(path) / "adapter_config.json"
        try:
            cfg = self._config(path)
        except (OSError, json.JSONDecodeError) as e:
            return f"{cfg_path}: unreadable ({e})"
        peft_type = cfg.get("peft_type", "?")
        if peft_type != "LORA":
            return f"peft_type {peft_type} (llama.cpp applies plain LoRA only)"
        if cfg.get("use_dora"):
            return "DoRA (llama.cpp has no weight-decomposed LoRA)"
        if cfg.get("use_rslora"):
            return "rsLoRA scaling (llama.cpp scales by alpha/r)"
        if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
            return "per-layer rank or alpha patterns"
        if cfg.get("modules_to_save"):
            return "modules_to_save (full copies of layers)"
        return None

    def dpo_start(self, base_dir, path):
        from peft import PeftModel

        from tuning.base import load_base

        model, tok = load_base(base_dir, "float32")
        model = PeftModel.from_pretrained(model, str(path), adapter_name=TRAINED, is_trainable=True)
        return model, tok, None  # TRL copies "default" into a frozen "ref" adapter


def _host(model):
    """The plain model under a PeftModel (bottleneck blocks live there), or model itself."""
    from peft import PeftModel

    return model.get_base_model() if isinstance(model, PeftModel) else model


class BottleneckKind(ArtifactKind):
    name = "bottleneck"
    attachable = True

    @property
    def weights(self) -> str:
        from tuning.bottleneck import BOTTLENECK_WEIGHTS  # imports torch: only when asked

        return BOTTLENECK_WEIGHTS

    def holds(self, path, manifest):
        from tuning.bottleneck import is_bottleneck_dir

        return is_bottleneck_dir(path)

    def prepare(self, model, params):
        from tuning import bottleneck

        model.requires_grad_(False)
        bottleneck.install(model, TRAINED, params.model_dump())
        bottleneck.set_active(model, TRAINED)

    def save(self, model, tok, staged, cfg):
        from tuning import bottleneck

        bottleneck.save(model, TRAINED, staged, cfg)

    def attach(self, model, name, path):
        from tuning import bottleneck

        bottleneck.load(_host(model), path, name)
        return model

    def attached(self, model, name):
        from tuning import bottleneck

        return name in bottleneck.names(_host(model))

    @contextlib.contextmanager
    def active(self, model, name):
        from tuning import bottleneck

        host = _host(model)
        bottleneck.set_active(host, name)
        try:
            yield
        finally:
            bottleneck.set_active(host, None)

    def mergeable(self, path):
        return "bottleneck adapters add modules between layers, there is no weight to fold them into"

    def gguf_support(self, path):
        return "a bottleneck adapter (llama.cpp has no adapter modules between layers)"

    def dpo_reference(self, base_dir):
        from tuning.base import load_base

        return load_base(base_dir, "float32")[0]  # the bare base: a fresh adapter starts as the identity

    def dpo_start(self, base_dir, path):
        from tuning import bottleneck
        from tuning.base import load_base

        model, tok = load_base(base_dir, "float32")
        model.requires_grad_(False)
        bottleneck.load(model, path, TRAINED, trainable=True)
        bottleneck.set_active(model, TRAINED)
        ref, _ = load_base(base_dir, "float32")  # a second copy of base + the same adapter, frozen
        bottleneck.load(ref, path, TRAINED)
        bottleneck.set_active(ref, TRAINED)
        return model, tok, ref


class FullKind(ArtifactKind):
    name = "full"

    def holds(self, path, manifest):
        if manifest is None:
            from tuning.adapters import ADAPTER_MANIFEST

            try:
                manifest = json.loads((Path(path) / ADAPTER_MANIFEST).read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                return False
        return manifest.get("kind") == self.name

    def prepare(self, model, params):
        for name, p in model.named_parameters():
            p.requires_grad = params.train_embeddings or "embed_tokens" not in name and "lm_head" not in name

    def save(self, model, tok, staged, cfg):
        model.save_pretrained(staged)
        tok.save_pretrained(staged)

    def mergeable(self, path):
        return "it is a full fine-tune, already a whole checkpoint (serve it as models.llm)"

    def gguf_support(self, path):
        return "a full fine-tune, already a whole checkpoint (convert it as a model, not as a LoRA)"

    def check_dpo(self, method):
        raise ConfigError(f"DPO recipe: method {method!r} is not supported (it needs a second full model as the "
                          "reference); use lora, or another adapter method")

    def dpo_start(self, base_dir, path):
        raise AdapterError(f"{path} is a full fine-tune, not an adapter; DPO continues adapters only")


KINDS: Registry[ArtifactKind] = Registry("artifact kind")
for _kind in (FullKind(), BottleneckKind(), PeftKind()):  # kind_for_dir asks them in this order
    KINDS.add(_kind.name, _kind)


def kind_of(name: str) -> ArtifactKind:
    """The kind registered as `name`; ConfigError naming it and the known kinds otherwise."""
    return KINDS.lookup(name)


def kind_for_dir(path: Path, manifest: dict | None = None) -> ArtifactKind:
    """The kind of the artifact at `path` (`manifest`: its manifest when already read; else read from the folder
    when a kind needs it). A folder no kind claims is taken as PEFT, whose readers then name the missing file."""
    for kind in KINDS.values():
        if kind.holds(Path(path), manifest):
            return kind
    return KINDS[PeftKind.name]


def attachable_kinds() -> list[ArtifactKind]:
    return [k for k in KINDS.values() if k.attachable]
