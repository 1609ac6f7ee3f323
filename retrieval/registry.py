"""A named registry, the one seam behind generation backends, fine-tuning methods and evaluation metrics: adding an
implementation is one `add`; a name registered twice is a bug, an unknown name a config error listing the known."""

from __future__ import annotations

from typing import Generic, TypeVar

from retrieval.errors import ConfigError

T = TypeVar("T")


class Registry(dict, Generic[T]):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def add(self, name: str, item: T) -> T:
        if name in self:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self[name] = item
        return item

    def names(self) -> list[str]:
        return sorted(self)

    def lookup(self, name: str, where: str = "") -> T:
        """The item, or a ConfigError: "<where>unknown <kind> 'x'; available: a, b"."""
        try:
            return self[name]
        except KeyError:
            raise ConfigError(f"{where}unknown {self.kind} {name!r}; available: {', '.join(self.names())}") \
                from None
