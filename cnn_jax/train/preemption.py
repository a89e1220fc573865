"""SIGTERM / SIGINT (preemption, Ctrl-C): finish the step, save a checkpoint, exit."""

from __future__ import annotations

import signal
import threading

from cnn_jax.errors import UserError


class Preempted(UserError):
  """Raised after the checkpoint of a preempted run is safely written."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.signum = signum


class PreemptionGuard:
  """Turns SIGTERM/SIGINT into a flag the training loop polls after every step."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signum: int | None = None
    self._previous: dict[int, object] = {}

  @property
  def requested(self) -> bool:
    return self.signum is not None

  def _handler(self, signum, frame) -> None:
    del frame
    self.signum = signum

  def __enter__(self) -> "PreemptionGuard":
    if threading.current_thread() is threading.main_thread():
      for sig in self.SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handler)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
