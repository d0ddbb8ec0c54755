"""The seeds of one configuration run as one job, each seed still a run of its own.

Each seed's job (Hydra's run_job around `python -m lossbench`'s task, as the basic launcher runs
it) goes through run.py's `execute` in a thread of its own, up to the point where execute calls
the trainer. There the seed hands over its model, optimiser, generator and `on_epoch` and waits;
once every seed waits, lossbench.batched trains them as one stack and hands each its Outcome as
soon as it ends, and that seed's thread finishes its run (summary, files, log, JobReturn) as
execute always does. Resume, validation, recorded errors and the files are therefore the
sequential run's own code.

One thread runs at a time: the next seed starts when the previous one waits or ends, and the
trainer runs only while all of them wait. Global state (the RNG seeding in seed_everything,
Hydra's current job, the logging configuration) is thus never shared by two runs at once.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator, Optional, Union

from lossbench.batched import SeedRun, train_seeds
from lossbench.run import TRAINER
from lossbench.signals import Interrupted, StopFlag
from lossbench.train import Outcome, train

# The seat whose run the current code works for: log lines are routed to that seed's log file.
CURRENT: ContextVar[Optional["Seat"]] = ContextVar("lossbench_seat", default=None)


class Seat:
    """One seed's job, paused where it hands its training over."""

    def __init__(self, label: str, job: Callable[[], Any]):
        self.label, self.job = label, job
        self.training: Optional[tuple] = None  # train.train's arguments, once handed over
        self.returned: Any = None  # what the job returned (a JobReturn) ...
        self.raised: Optional[BaseException] = None  # ... or what it raised
        self.log_files: list[str] = []
        self._waiting, self._resumed = threading.Event(), threading.Event()
        self._outcome: Union[Outcome, BaseException, None] = None
        self._thread = threading.Thread(target=self._run, name=label, daemon=True)

    def _run(self) -> None:
        CURRENT.set(self)
        TRAINER.set(self._hand_over)
        try:
            self.returned = self.job()
        except BaseException as error:  # re-raised by the launcher once the group is done
            self.raised = error
        finally:
            self._waiting.set()

    def _hand_over(self, *train_args: Any) -> Outcome:
        self.training = train_args
        self._waiting.set()
        self._resumed.wait()
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        return self._outcome

    def start(self) -> None:
        """Run the job up to its training, or to its end (skipped, refused, failed)."""
        self._thread.start()
        self._waiting.wait()
        root = logging.getLogger()
        self.log_files = [h.baseFilename for h in root.handlers if isinstance(h, logging.FileHandler)]

    def finish(self, outcome: Union[Outcome, BaseException]) -> None:
        """Hand the training's outcome (or what it raised) back and let the run end."""
        self._outcome = outcome
        self._resumed.set()
        self._thread.join()

    def stop(self, error: BaseException) -> None:
        """The group stops before training this seat: once its job has handed its training over
        (or ended), it ends with `error`, recorded as the run's own, and its thread is done. A
        seat not started is left alone: it has touched nothing."""
        if self._thread.ident is None:
            return
        self._waiting.wait()
        if not self.finished:
            self._outcome = error
            self._resumed.set()
        self._thread.join()

    @property
    def finished(self) -> bool:
        return self._resumed.is_set() or self.training is None

    @contextmanager
    def speaking(self) -> Iterator[None]:
        token = CURRENT.set(self)
        try:
            yield
        finally:
            CURRENT.reset(token)


class TaggedFormatter(logging.Formatter):
    """The console's format, each line of a seed's run prefixed with the seed's label."""

    def __init__(self, base: Optional[logging.Formatter]):
        super().__init__()
        self.base = base or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        seat = CURRENT.get()
        text = self.base.format(record)
        return f"[{seat.label}] {text}" if seat else text


@contextmanager
def routed_logs(seats: list[Seat]) -> Iterator[None]:
    """While the seeds train together, each seed's lines go to its own log file, as they would
    under the basic launcher; lines about the group go to all of them."""
    root = logging.getLogger()
    opened = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
    formatter = opened[0].formatter if opened else None
    for handler in opened:
        root.removeHandler(handler)
        handler.close()
    consoles = {h: h.formatter for h in root.handlers}
    added = []
    for seat in seats:
        for path in seat.log_files:
            handler = logging.FileHandler(path)
            handler.setFormatter(formatter)
            handler.addFilter(lambda record, seat=seat: CURRENT.get() in (None, seat))
            root.addHandler(handler)
            added.append(handler)
    for handler, console_format in consoles.items():
        handler.setFormatter(TaggedFormatter(console_format))
    try:
        yield
    finally:
        for handler in added:
            root.removeHandler(handler)
            handler.close()
        for handler, console_format in consoles.items():
            handler.setFormatter(console_format)


def run_seats(seats: list[Seat], log: logging.Logger) -> None:
    """Start every seat, train the ones that handed their training over as one stack, and let
    each finish. Every seat started has ended when this returns (or raises), its run recorded
    with a final status; a stop signal is raised as Interrupted once they have."""
    with StopFlag() as stop:
        try:
            for seat in seats:
                seat.start()
            training = [seat for seat in seats if seat.training is not None]
            if training:
                with routed_logs(training), stop.deferred():
                    log.info(f"batched: {len(training)} seeds trained as one stack "
                             f"({', '.join(s.label for s in training)})")
                    _train(training, stop)
        except BaseException as error:
            # Each unfinished seed records the error as its own run's; as under the basic
            # launcher, a bug fails these runs and the sweep goes on, an interrupt stops it.
            with stop.held():
                for seat in seats:
                    seat.stop(error)
            if not isinstance(error, Exception):
                raise
    if stop.requested:
        raise Interrupted(stop.signum)


def _speaking(seat: Seat, on_epoch: Callable) -> Callable:
    def on_epoch_of_seat(*records: Any) -> None:
        with seat.speaking():
            on_epoch(*records)

    return on_epoch_of_seat


def _train(seats: list[Seat], stop: StopFlag) -> None:
    # train.train's arguments: model, spec, criterion, data, optimizer, trainer, device, generator, on_epoch,
    # stop_requested[, recipe]
    model, spec, criterion, data, optimizer, trainer, device, generator, on_epoch, _, *recipe = seats[0].training

    def finished(index: int, outcome: Outcome) -> None:
        # The seed's own StopFlag saw no signal (they reach the main thread only): an interrupted
        # seed is handed the signal itself, which its run records and raises.
        seats[index].finish(Interrupted(stop.signum) if outcome.status == "interrupted" else outcome)

    if len(seats) == 1:  # nothing to stack: the sequential loop itself
        with seats[0].speaking():
            outcome = train(model, spec, criterion, data, optimizer, trainer, device, generator,
                            _speaking(seats[0], on_epoch), lambda: stop.requested, *recipe)
        finished(0, outcome)
        return
    runs = [SeedRun(args[0], args[4], args[7], _speaking(seat, args[8]))
            for seat, args in zip(seats, (seat.training for seat in seats))]
    train_seeds(runs, spec, criterion, data, trainer, device, finished, lambda: stop.requested, *recipe)
