"""Name -> constructor registries: components are looked up by the names in a config.

A wrong name fails at once and lists the valid ones, so a typo in
`--config.model.name` never reaches the training loop.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from cnn_jax.errors import ConfigError

T = TypeVar("T")


class UnknownNameError(ConfigError):
  """A config named a component that is not registered."""


class Registry(Generic[T]):
  """A small, explicit name -> object map with helpful errors."""

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: dict[str, T] = {}

  def register(self, name: str) -> Callable[[T], T]:
    """Decorator: `@MODELS.register("lenet5")`."""

    def add(obj: T) -> T:
      if name in self._entries:
        raise ValueError(f"{self.kind} {name!r} is registered twice.")
      self._entries[name] = obj
      return obj

    return add

  def get(self, name: str) -> T:
    try:
      return self._entries[name]
    except KeyError:
      raise UnknownNameError(self.unknown_message(name)) from None

  def unknown_message(self, name: str) -> str:
    return f"Unknown {self.kind} {name!r}. Known {self.kind}s: {', '.join(self.names())}."

  def names(self) -> list[str]:
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self._entries

  def __iter__(self) -> Iterator[str]:
    return iter(self.names())
