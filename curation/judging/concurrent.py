"""Asking several judges at once: each judge's backend works through its own calls in its own
thread (one endpoint does not wait for another), and answers come back as they finish."""

from __future__ import annotations

import contextvars
import queue
import threading
from typing import Callable, Iterator

from prefcurate.curation.backends import ChatResult
from prefcurate.curation.judging.calls import PlannedCall


def complete_concurrently(calls: list[PlannedCall], on_result: Callable[[PlannedCall, ChatResult], None] | None = None,
                          ) -> Iterator[tuple[PlannedCall, ChatResult]]:
    """(call, result) pairs as they arrive. `on_result` sees each one the moment it arrives, in its
    judge's thread (the journal: durable before the consumer gets to it)."""
    by_judge: dict[str, list[PlannedCall]] = {}
    for call in calls:
        by_judge.setdefault(call.judge.name, []).append(call)
    done: queue.Queue = queue.Queue(maxsize=1024)
    finished = object()
    stop = threading.Event()  # the consumer stopped early (an endpoint failing, Ctrl-C): stop asking

    def send(item) -> bool:
        while not stop.is_set():
            try:
                done.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work(judge_calls: list[PlannedCall]) -> None:
        by_id = {call.key: call for call in judge_calls}
        results = judge_calls[0].judge.backend.complete(call.request for call in judge_calls)
        try:
            for result in results:
                if on_result is not None:
                    on_result(by_id[result.key], result)
                if not send((by_id[result.key], result)):
                    break
        except BaseException as error:  # a backend that breaks (not one failed call) ends the stage
            send(error)
        finally:
            results.close()  # cancels what the backend still has queued
            send(finished)

    # Each worker runs in a copy of this thread's context: what it logs (a backend's retries) belongs
    # to the same Prefect run, instead of warning that it has none.
    threads = [threading.Thread(target=contextvars.copy_context().run, args=(work, group), daemon=True,
                                name=f"judge-{name}") for name, group in by_judge.items()]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            item = done.get()
            if item is finished:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        stop.set()
