"""Stop signals, one path for every command: Ctrl-C (SIGINT), a scheduler's SIGTERM (Slurm
preemption) and a closed terminal's SIGHUP end any lossbench command the same way, with exit
code 128 + the signal's number (130, 143, 129), one line and no traceback.

Standard library only: `lossbench/__init__.py` installs `exit_at_once` while a command's heavy
modules import, before anything has started that a signal would need to record.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

log = logging.getLogger("lossbench")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A command stopped by a stop signal; a run it stops is recorded `interrupted`, resumable."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_code(interruption: KeyboardInterrupt) -> int:
    return 128 + getattr(interruption, "signum", signal.SIGINT)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _heeded() -> list[int]:
    """The stop signals this process does not ignore: one started under `nohup` (SIGHUP) or in
    the background of a script (SIGINT) keeps ignoring them, as Python itself does with SIGINT."""
    return [signum for signum in STOP_SIGNALS if signal.getsignal(signum) is not signal.SIG_IGN]


def exit_at_once(signum: int, frame: Any) -> None:
    """Nothing has started yet (the command's modules are still importing): exit now."""
    sys.stderr.write(f"{signal.Signals(signum).name}: stopped before starting\n")
    sys.stderr.flush()
    os._exit(128 + signum)


def raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def install(handler: Callable[[int, Any], None] = raise_interrupted) -> None:
    """`handler` for every stop signal, from now on (the main thread only can set one)."""
    if _in_main_thread():
        for signum in _heeded():
            signal.signal(signum, handler)


def run_command(prog: str, main: Callable[[], int], wind_down: Callable[[str], None] = lambda name: None) -> int:
    """main()'s exit code, or 128 + the signal's number when a stop signal ends it: one line
    saying so after `wind_down(the signal's name)` (which a second signal cuts short), never a
    traceback."""
    install()
    try:
        return main()
    except KeyboardInterrupt as interruption:
        name = signal.Signals(exit_code(interruption) - 128).name
        try:
            wind_down(name)
        except KeyboardInterrupt:
            pass
        print(f"{prog}: stopped by {name}", file=sys.stderr)
        return exit_code(interruption)


class StopFlag:
    """Turns a stop signal into Interrupted. Inside `deferred()` (the training loop) the first
    signal only asks the loop to stop at the next step boundary, so no step or file is cut in
    half; inside `held()` (a final status being written) signals are only noted; elsewhere
    (validation, data loading) and on a second signal it raises at once. `requested` tells
    whether any arrived: whoever holds the flag stops once its records are written."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._deferring = self._holding = False
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> "StopFlag":
        if _in_main_thread():
            self._previous = {signum: signal.signal(signum, self._handle) for signum in _heeded()}
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        first = not self.requested
        self.signum = self.signum or signum
        if self._holding:
            return
        if first and self._deferring:
            log.warning(f"{signal.Signals(signum).name}: stopping after this step (again to abort)")
            return
        raise Interrupted(signum)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False

    @contextmanager
    def held(self) -> Iterator[None]:
        holding, self._holding = self._holding, True
        try:
            yield
        finally:
            self._holding = holding

    def __exit__(self, *exc: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
