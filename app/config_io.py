"""Reading a YAML config file into a typed model: the file's mapping, then pydantic validation whose first problem
becomes one `ConfigError` line naming the file and the field (shared by the config, the cast, cues and A/B files)."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from retrieval.errors import ConfigError, yaml_error_message


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(yaml_error_message(path, e)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _format_validation(path: Path, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key (check spelling; see docs/configuration.md)"
    return f"{path}: {loc}: {msg}"


def _validate(cls, data: dict, path: Path):
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation(path, e)) from None
