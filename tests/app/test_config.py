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
