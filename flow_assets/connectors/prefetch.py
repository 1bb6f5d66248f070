"""Fetch the next pages on a worker thread while the caller handles the current one."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")


def prefetched(pages: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Fetch the next pages on a worker thread while the caller handles the current one."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def work() -> None:
        try:
            for page in pages:
                if stop.is_set():
                    return
                buffer.put(page)
            buffer.put(end)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            buffer.put(exc)

    worker = threading.Thread(target=work, name="prefetch-pages", daemon=True)
    worker.start()
    try:
        while True:
            item = buffer.get()
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a worker waiting on a full queue
            try:
                buffer.get_nowait()
            except queue.Empty:
                worker.join(0.05)
