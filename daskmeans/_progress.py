"""Progress reporting for long fits: a terminal bar or one log line per step.

:class:`Progress` is a callable suitable for the ``callback`` argument of
:class:`daskmeans.KMeans`; it receives one event per initialisation round and
per Lloyd iteration (keys ``phase``, ``iteration``, ``max_iter``, ``inertia``,
``shift``, ``n_passes``). On a terminal it redraws a bar per phase; anywhere
else (a log file, cron's mail, a CI console) it prints one line per event.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import IO, Any, Literal

__all__ = ["Progress", "format_event"]

Mode = Literal["auto", "bar", "log", "off"]

_PHASE_NAMES = {"init": "init", "lloyd": "lloyd"}


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return str(value)


def format_event(event: dict) -> str:
    """One-line, human and grep friendly description of a progress event.

    Parameters
    ----------
    event : dict
        A callback event of :class:`daskmeans.KMeans`.

    Returns
    -------
    str
        For example ``"lloyd iteration 3/300 inertia=1.2346e+05 shift=1.2e-03 passes=8"``.
    """
    phase = _PHASE_NAMES.get(event.get("phase"), str(event.get("phase")))
    word = "round" if phase == "init" else "iteration"
    total = event.get("max_iter")
    step = f"{event.get('iteration', '?')}" + (f"/{total}" if total else "")
    return (
        f"{phase} {word} {step} inertia={_fmt(event.get('inertia'), '.6e')} "
        f"shift={_fmt(event.get('shift'), '.3e')} passes={event.get('n_passes', '-')}"
    )


class Progress:
    """Report fit progress to a stream (standard error by default).

    Parameters
    ----------
    stream : file-like, optional
        Where to write; ``sys.stderr`` when not given.
    mode : {"auto", "bar", "log", "off"}, default="auto"
        ``"bar"`` redraws a progress bar per phase, ``"log"`` writes one
        time-stamped line per event, ``"off"`` writes nothing; ``"auto"``
        picks the bar when ``stream`` is a terminal and log lines otherwise.
    prefix : str, default="daskmeans"
        Program name at the start of log lines.
    width : int, default=24
        Width of the bar in characters.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> p = Progress(out, mode="log")
    >>> p({"phase": "lloyd", "iteration": 1, "max_iter": 10, "inertia": 2.5,
    ...    "shift": None, "n_passes": 3})
    >>> "lloyd iteration 1/10" in out.getvalue()
    True
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        mode: Mode = "auto",
        prefix: str = "daskmeans",
        width: int = 24,
    ) -> None:
        if mode not in ("auto", "bar", "log", "off"):
            raise ValueError(f"mode must be 'auto', 'bar', 'log' or 'off', got {mode!r}")
        self.stream = stream if stream is not None else sys.stderr
        if mode == "auto":
            isatty = getattr(self.stream, "isatty", None)
            mode = "bar" if callable(isatty) and isatty() else "log"
        self.mode: Mode = mode
        self.prefix = prefix
        self.width = max(4, int(width))
        self._phase: str | None = None
        self._open_line = False
        self._start = time.perf_counter()

    # -- helpers -----------------------------------------------------------------------

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # closed pipe or stream: progress is best effort
            self.mode = "off"

    def _end_line(self) -> None:
        if self._open_line:
            self._write("\n")
            self._open_line = False

    def _bar(self, event: dict) -> str:
        total = event.get("max_iter") or 0
        done = int(event.get("iteration") or 0)
        frac = min(1.0, done / total) if total else 0.0
        filled = int(round(frac * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        phase = _PHASE_NAMES.get(event.get("phase"), str(event.get("phase")))
        count = f"{done}/{total}" if total else f"{done}"
        elapsed = time.perf_counter() - self._start
        return (
            f"\r{phase:<5} [{bar}] {count:>9}  inertia {_fmt(event.get('inertia'), '.6e')}"
            f"  shift {_fmt(event.get('shift'), '.2e')}  {elapsed:6.1f}s"
        )

    # -- public API --------------------------------------------------------------------

    def __call__(self, event: dict) -> None:
        """Report one event (the estimator's ``callback`` signature)."""
        if self.mode == "off":
            return
        if self.mode == "bar":
            if self._phase is not None and event.get("phase") != self._phase:
                self._end_line()
            self._phase = event.get("phase")
            self._write(self._bar(event))
            self._open_line = True
        else:
            self.log(format_event(event))

    def log(self, message: str) -> None:
        """Write a free-form message on its own line (after any open bar)."""
        if self.mode == "off":
            return
        self._end_line()
        if self.mode == "log":
            stamp = datetime.now().astimezone().isoformat(timespec="seconds")
            self._write(f"{stamp} {self.prefix}: {message}\n")
        else:
            self._write(f"{message}\n")

    def close(self) -> None:
        """Terminate an open progress bar line."""
        self._end_line()
        self._phase = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
