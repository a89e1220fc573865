"""Name -> constructor registries: components are looked up by the names in a config.

A wrong name fails at once and lists the valid ones, so a typo in
`--config.model.name` never reaches the training loop.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any, Callable, Generic, Iterator, TypeVar

import ml_collections
from ml_collections import config_dict

from cnn_jax.errors import ConfigError

T = TypeVar("T")


class UnknownNameError(ConfigError):
  """A config named a component that is not registered."""


class Registry(Generic[T]):
  """A small, explicit name -> object map with helpful errors."""

  def __init__(self, kind: str, *, context: tuple[str, ...] = ()):
    """`context`: keyword arguments that the caller supplies, not the config (see `params`)."""
    self.kind = kind
    self.context = context
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

  def params(self, name: str) -> dict[str, Any]:
    """The settings of function entry `name`: its keyword-only parameters and their defaults
    (the one source of defaults: the signature), minus the `context` arguments."""
    return {
        k: p.default
        for k, p in inspect.signature(self.get(name)).parameters.items()
        if k not in self.context and p.kind == p.KEYWORD_ONLY
    }

  def check_params(self, name: str, params: dict[str, Any]) -> None:
    unknown = sorted(set(params) - set(self.params(name)))
    if unknown:
      raise ConfigError(
          f"{self.kind.capitalize()} {name!r} has no parameter(s) {', '.join(unknown)}. "
          f"Its parameters are: {', '.join(sorted(self.params(name)))}."
      )

  def default_config(self, name: str) -> ml_collections.ConfigDict:
    """`ConfigDict(name=..., **defaults)`; a None default becomes a typed placeholder, so
    `--config.<field>=value` can set it."""
    hints = typing.get_type_hints(self.get(name))
    config = ml_collections.ConfigDict({"name": name})
    for k, v in self.params(name).items():
      if v is None:
        types_ = [t for t in typing.get_args(hints.get(k)) if t is not type(None)]
        if len(types_) != 1 or types_[0] not in (int, float, str, bool):
          continue  # not settable from a flag (e.g. arrays passed in memory)
        v = config_dict.placeholder(types_[0])
      config[k] = v
    return config

  def names(self) -> list[str]:
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self._entries

  def __iter__(self) -> Iterator[str]:
    return iter(self.names())
