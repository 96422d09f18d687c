"""Ctrl-C during training: a flag read between steps, so no checkpoint holds half a step."""

from __future__ import annotations

import signal
import threading


class CtrlC:
    """A context in which Ctrl-C (SIGINT) sets ``requested`` instead of raising.

    Outside the main thread no handler can be installed; Ctrl-C then raises
    ``KeyboardInterrupt`` as usual, which the training loop also turns into a stop.
    """

    def __init__(self, requested: bool = False) -> None:
        self.requested = requested
        self._previous = None

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._request)
        return self

    def _request(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, kind, value, tb) -> bool:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        if kind is KeyboardInterrupt:  # where no handler was installed: between ops
            self.requested = True
            return True
        return False
