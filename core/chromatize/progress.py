"""Progress that never goes back, and cancellation checks: the one implementation front ends and
the pipeline share."""

from __future__ import annotations

from collections.abc import Callable

from chromatize.errors import Cancelled

ProgressCallback = Callable[[float], None]
CancelCallback = Callable[[], bool]


class Progress:
    """Reports a fraction in [0, 1] that never decreases, and raises when the caller cancels.

    ``callback(fraction)`` receives each new value (never a smaller one than before, never
    outside [0, 1]); ``cancel()`` is polled by :meth:`check`, which raises
    :class:`~chromatize.errors.Cancelled` when it returns True.
    """

    def __init__(self, callback: ProgressCallback | None = None,
                 cancel: CancelCallback | None = None) -> None:
        self.callback = callback
        self.cancel = cancel
        self.last = 0.0

    def check(self) -> None:
        """Raise Cancelled if the caller asked to stop."""
        if self.cancel is not None and self.cancel():
            raise Cancelled("colorization was cancelled")

    def report(self, fraction: float) -> None:
        """Move to ``fraction`` (clamped to [last, 1])."""
        fraction = min(1.0, max(self.last, float(fraction)))
        self.last = fraction
        if self.callback is not None:
            self.callback(fraction)

    def span(self, start: float, end: float) -> ProgressCallback:
        """A callback mapping 0..1 onto ``start..end`` of this progress."""
        return lambda fraction: self.report(start + (end - start) * fraction)


def monotonic(callback: ProgressCallback) -> ProgressCallback:
    """``callback`` wrapped so that it only ever sees non-decreasing values in [0, 1]."""
    return Progress(callback).report
