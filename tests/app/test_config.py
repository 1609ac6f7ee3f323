import pytest

from app.config import Cast, EternaConfig
from retrieval.errors import ConfigError


def test_unknown_key_is_an_error_naming_file_and_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("retrieval:\n  kk: 3\n")
    with pytest.raises(ConfigError, match=r"c.yaml: retrieval.kk: unknown key"):
        EternaConfig.load(path)


def test_relative_paths_resolve_against_the_file(tmp_path):
    path = tmp_path / "sub" / "c.yaml"
    path.parent.mkdir()
    path.write_text("paths:\n  index: ../idx\n")
    assert EternaConfig.load(path).paths.index == (tmp_path / "idx").resolve()


@pytest.mark.parametrize("body, message", [
    ("npcs: []", "npcs: List should have at least 1 item"),
    ("npcs:\n  - {id: a, name: A, role: npc, persona: p, style: s, knows: all}\n"
     "  - {id: a, name: B, role: npc, persona: p, style: s, knows: all}", "duplicate NPC id 'a'"),
    ("npcs:\n  - {id: A-1, name: A, role: npc, persona: p, style: s, knows: all}", "npcs.0.id"),
    ("npcs: [", "invalid YAML"),
])
def test_bad_cast_files(tmp_path, body, message):
    path = tmp_path / "npcs.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=message):
        Cast.load(path)


@pytest.mark.parametrize("body, message", [
    ("npcs:\n  - {id: a, name: A, role: npc, persona: p, style: s, knows: [kitchen]}",
     r"npcs.yaml: npcs.0.knows: lore kind 'kitchen' is not declared in world.kinds \(room, rule\)"),
    ("npcs:\n  - {id: a, name: A, role: pilot, persona: p, style: s, knows: all}",
     r"npcs.0.role: 'pilot' is not a role of this world .*declare it under world.roles"),
])
def test_cast_is_checked_against_the_world(tmp_path, body, message):
    from app.config import WorldConfig

    path = tmp_path / "npcs.yaml"
    path.write_text(body)
    Cast.load(path)  # on its own the cast is well-formed
    with pytest.raises(ConfigError, match=message):
        Cast.load(path, WorldConfig(kinds=["room", "rule"]))
    assert Cast.load(path, WorldConfig(kinds=["room", "rule", "kitchen"], roles={"pilot": "a pilot"})).npcs


@pytest.mark.parametrize("body, message", [
    ("world:\n  kinds: []", "world.kinds: Value error, declare at least one lore kind"),
    ("prompts:\n  fact: 'Answer as {hero}.'", r"prompts.fact: Value error, unknown placeholder \{hero\}"),
    ("grounding:\n  answer: guess", "grounding.answer"),
])
def test_bad_world_prompt_and_grounding_sections(tmp_path, body, message):
    path = tmp_path / "c.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=message):
        EternaConfig.load(path)


@pytest.mark.parametrize("name", ["eterna", "kestrel", "sealed"])
def test_every_shipped_world_config_loads(name):
    from tests.conftest import REPO

    cfg = EternaConfig.load(REPO / "configs" / f"{name}.yaml")
    cast = Cast.load(cfg.paths.npcs, cfg.world)
    assert cfg.world.kinds and cfg.world.name != "the game world"
    assert [n.role for n in cast.npcs].count("director") == 1


def test_shipped_configs_load():
    from tests.conftest import REPO

    cfg = EternaConfig.load(REPO / "configs" / "eterna.yaml")
    cast = Cast.load(cfg.paths.npcs, cfg.world)
    roles = [n.role for n in cast.npcs]
    assert roles.count("director") == 1 and roles.count("npc") >= 3 and roles.count("book") >= 1


def test_built_in_roles_are_neutral_and_a_world_names_its_own():
    """No world's words in the built-in roles: a `book` speaker of a world that says nothing is a neutral record,
    and a world that names its books its own way is heard that way in the prompt."""
    from app.config import NpcSpec, WorldConfig
    from app.prompt import system_prompt

    npc = NpcSpec(id="log", name="The Log", role="book", persona="A ship's log.", style="Terse.", knows="all")
    bare = system_prompt(npc, WorldConfig(name="Somewhere"))
    assert "a written record that can speak" in bare and "living" not in bare
    own = system_prompt(npc, WorldConfig(name="Somewhere", roles={"book": "a haunted diary"}))
    assert "a haunted diary" in own and "a written record" not in own


@pytest.mark.parametrize("body, message", [
    ("models:\n  backend: vllm", r"models.backend: .*unknown backend 'vllm'; available: auto, batched, llamacpp, "
                                 r"openai, transformers"),
    ("models:\n  max_batch: 4", r"models: .*models.max_batch is now models.batched.max_batch: move it under "
                                r"`batched:`"),
    ("models:\n  gguf: m.gguf", r"models.gguf is now models.llamacpp.gguf"),
    ("models:\n  state_cache_mb: 0", r"models.state_cache_mb is now models.llamacpp.state_cache_mb"),
    ("models:\n  batched: {max_batch: 0}", r"models.batched.max_batch: Input should be greater than or equal to 1"),
])
def test_backend_names_come_from_the_registry_and_options_live_under_the_backends_name(tmp_path, body, message):
    path = tmp_path / "c.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=message):
        EternaConfig.load(path)


def test_a_backends_options_reach_its_factory_and_relative_paths_resolve(tmp_path):
    from app.backends import backend_names
    from app.config import BackendOptions, ModelsConfig

    path = tmp_path / "c.yaml"
    path.write_text("models:\n  backend: batched\n  batched: {max_batch: 3}\n  llamacpp: {gguf: m.gguf}\n")
    m = EternaConfig.load(path).models
    assert m.options("batched") == {"max_batch": 3, "batch_window_ms": 5.0} and m.options("transformers") == {}
    assert m.llamacpp.gguf == (tmp_path / "m.gguf").resolve()
    # every options section is named after a registered backend (a renamed backend cannot leave its options behind)
    sections = [n for n, f in ModelsConfig.model_fields.items()
                if isinstance(f.annotation, type) and issubclass(f.annotation, BackendOptions)]
    assert sections and set(sections) <= set(backend_names())
