"""Preemption: SIGTERM and SIGINT end training after the current step, with a checkpoint.

Slurm (`#SBATCH --signal=TERM@120`), Kubernetes and spot instances send SIGTERM some time before
they kill a job; Ctrl-C sends SIGINT. While the training loop runs, `StopSignals` turns either into
a request the loop reads after each optimizer step. The processes of a run agree on it (one
all-reduce per step: they may receive the signal at different steps), all save that step with the
atomic `save_checkpoint`, and `train` raises `TrainingStopped`, which the CLI turns into one line
saying how to resume and the status a shell reports for the signal (143 for SIGTERM, 130 for
SIGINT). `--resume latest` then continues exactly as if nothing had happened.

A repeated SIGTERM is ignored (a launcher forwarding what the scheduler already sent every
process); a second Ctrl-C, a moment after the first, gives up waiting (`KeyboardInterrupt`): a
checkpoint half written then stays in its temporary folder and `latest` names the previous one.

Example:
    >>> import signal
    >>> with StopSignals() as signals:
    ...     signal.raise_signal(signal.SIGTERM)  # what `kill PID` or a scheduler sends
    ...     signals.name
    'SIGTERM'
    >>> signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the previous handler is back
    True
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# A terminal's Ctrl-C can reach a process both directly and through a launcher that forwards it;
# only a second press, later than that, means "stop waiting".
_REPEAT_WINDOW_S = 1.0


class StopSignals:
    """Inside `with`, SIGTERM and SIGINT set `signum` instead of ending the process (only in the
    main thread, where Python runs signal handlers); the previous handlers come back on exit, so
    notebooks and test runners keep theirs.

    Example:
        >>> with StopSignals() as signals:
        ...     signals.signum is None  # nothing received: keep training
        True
    """

    def __init__(self):
        self.signum: int | None = None
        self._received_at = 0.0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        # Only a flag: the loop acts on it between steps, where stopping is clean.
        if self.signum is None:
            self.signum, self._received_at = signum, time.monotonic()
        elif signum == signal.SIGINT and time.monotonic() - self._received_at > _REPEAT_WINDOW_S:
            raise KeyboardInterrupt

    @property
    def name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name


class TrainingStopped(KeyboardInterrupt):
    """`train` ended early by SIGTERM or SIGINT after `step`; `checkpoint` is the checkpoint of
    that step (None when none could be saved: the weights were not finite). A `KeyboardInterrupt`,
    so that `except Exception` in a caller does not carry on as if training had finished.

    Example:
        >>> stopped = TrainingStopped(signal.SIGTERM, 7, Path("runs/x/checkpoints/step_7"))
        >>> stopped.exit_status, str(stopped)
        (143, 'stopped by SIGTERM after step 7: saved runs/x/checkpoints/step_7')
    """

    def __init__(self, signum: int, step: int, checkpoint: Path | None, newest: Path | None = None):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        what = f"stopped by {signal.Signals(signum).name} after step {step}"
        if checkpoint is not None:
            message = f"{what}: saved {checkpoint}"
        else:
            kept = f"the newest checkpoint is {newest}" if newest is not None else "no checkpoint was saved"
            message = f"{what} without a checkpoint (the last steps were not finite); {kept}"
        super().__init__(message)

    @property
    def exit_status(self) -> int:
        """What a shell reports for a process ended by the signal: 128 + its number."""
        return 128 + self.signum


__all__ = ["STOP_SIGNALS", "StopSignals", "TrainingStopped"]
