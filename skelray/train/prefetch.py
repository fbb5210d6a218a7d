"""Prefetching: the next batches prepared in a background thread while the current step runs.

The input pipeline is numpy and the step is torch; both release the GIL in their heavy parts,
so a second thread overlaps them even in one process. The queue is bounded (``depth``
batches ahead), so memory stays bounded when the pipeline is faster than the model.

Deterministic: one thread runs the iterator from start to end, so it takes the same random
draws in the same order as without prefetch and yields the same batches in the same order;
a generator shared with it must not be used elsewhere until the iteration has ended.
Leaving early (``break``, an exception in the step) stops the thread and closes the
iterator; an exception in the iterator is raised in the consumer, where the step runs.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_POLL_S = 0.05  # how often a blocked producer checks whether the consumer has gone


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_DONE = object()


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put ``item``, waiting for room; False when the consumer left first."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def prefetch(items: Iterable[T], depth: int, *, prepare: Callable[[T], T] | None = None) -> Iterator[T]:
    """Yield ``items`` as a background thread produces them, up to ``depth`` ahead; ``depth``
    0 yields them in this thread (no prefetch). ``prepare`` runs on each item in the thread
    too (e.g. pinning host memory for an asynchronous copy to a GPU)."""
    if depth <= 0:
        for item in items:
            yield prepare(item) if prepare is not None else item
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        it = iter(items)
        try:
            for item in it:
                if not _put(q, prepare(item) if prepare is not None else item, stop):
                    return
            _put(q, _DONE, stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            _put(q, _Failed(exc), stop)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="skelray-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()
