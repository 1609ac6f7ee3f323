"""Typed errors shared by every Eterna package. Each message names the file, line or field, and the fix."""


class EternaError(Exception):
    """Base class: anything the user can fix (bad input, bad config, missing artifact)."""


class ConfigError(EternaError):
    """A config file or value is invalid."""


class CorpusError(EternaError):
    """A lore document, JSONL line or data file is malformed."""


class IndexMissingError(EternaError):
    """No index at the given path."""


class IndexMismatchError(EternaError):
    """The index was built with another embedder or format than the one asked for."""


class IndexBusyError(EternaError):
    """Another rebuild of the same index holds its lock for longer than the caller is willing to wait."""


class ModelNotFoundError(EternaError):
    """A model id or path cannot be resolved offline."""


class InputError(EternaError):
    """Player input that cannot be served (empty, too long, unknown NPC)."""


class UnknownNpcError(InputError):
    """The NPC id is not in the cast."""


class AdapterError(EternaError):
    """An adapter is missing, malformed, or was trained on another base model."""


def yaml_error_message(path, e: Exception, what: str = "invalid YAML", first_line: int = 1) -> str:
    """`path:line:column: invalid YAML (problem)` for a yaml.YAMLError (`path` alone when PyYAML gives no position);
    `first_line`: the line of the file the parsed text starts on (front matter starts on line 2)."""
    mark = getattr(e, "problem_mark", None)
    where = f"{path}:{mark.line + first_line}:{mark.column + 1}" if mark is not None else f"{path}"
    return f"{where}: {what} ({getattr(e, 'problem', None) or e})"
