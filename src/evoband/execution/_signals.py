"""Ctrl-C and SIGTERM around synchronous calls into a Dask client.

A signal handler's exception raised inside one of distributed's synchronous calls can leave a
lock of it held (or a traceback logged by distributed); Dask's IO loop thread then blocks on that
lock and closing the cluster hangs. These helpers hold the signals back during such calls and
deliver them right after, outside any lock.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator

from distributed import Future, as_completed


def next_finished(finished: as_completed, poll: float = 0.01) -> Future:
    """The next finished future of ``finished``, waiting for one.

    Ctrl-C and SIGTERM are raised between polls, never inside ``as_completed``: an exception
    raised there by a signal handler can leave one of its locks held, and Dask's IO loop thread
    then blocks on that lock forever, so closing the cluster hangs."""
    while True:
        with signals_deferred():
            if finished.has_ready():
                return next(finished)
        time.sleep(poll)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back during a short call into the client, then deliver them: an
    interrupt inside one of its synchronous calls leaves distributed logging a traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda n, _frame: received.append(n))
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:
            handler = previous[signal.Signals(received[0])]
            if callable(handler):
                handler(received[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(received[0])
