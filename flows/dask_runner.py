"""Prefect's Dask task runner, handing out our chunks of calls for less of the flow's CPU.

prefect-dask's client does two things per task that cost the flow process more than the chunk's
calls themselves (bench/judge_fanout.py, py-spy):
- it submits with Dask's default `pure=True`, so Dask names every task by hashing its function and
  arguments: a fresh wrapper closure, the chunk and Prefect's serialized context, each time. The
  hash buys nothing here: every submission carries a new task-run id, so no two keys could match.
  We submit with `pure=False` (a random key).
- it serializes Prefect's whole context for every task (`serialize_context`: the flow run and all
  of Prefect's settings, walked field by field): ~40-50% of the thread that hands out chunks. The
  flow run and the settings do not change while a stage runs, so we serialize them once per run
  (again whenever a context object differs) and add only each task's own asset context.
Imported only when a stage fans out: distributed is slow to import.
"""

from __future__ import annotations

import threading
from uuid import uuid4

from distributed import Client
from prefect.context import AssetContext, EngineContext, SettingsContext, TagsContext, TaskRunContext, serialize_context
from prefect.task_engine import run_task_sync
from prefect_dask import DaskTaskRunner
from prefect_dask.task_runners import PrefectDaskFuture


def run_task_on_worker(**run_task_kwargs):
    """Runs on the worker. Module-level, so Dask pickles it by name, not as a closure per task."""
    return run_task_sync(**run_task_kwargs)


class ChunkTaskRunner(DaskTaskRunner):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._context_lock = threading.Lock()
        self._context_of: tuple = ()  # ids of the context objects it was made from, and the tags
        self._objects: tuple = ()  # those objects, held so their ids cannot be reused
        self._serialized: dict = {}

    def submit(self, task, parameters, wait_for=None, dependencies=None):
        if not self._started:
            raise RuntimeError("The task runner must be started before submitting work.")
        # our chunks take no futures as parameters and wait for nothing: anything else (or an async
        # task) goes through prefect-dask as it is
        if wait_for or task.isasync or any(isinstance(value, PrefectDaskFuture) for value in parameters.values()):
            return super().submit(task, parameters, wait_for, dependencies)
        task_run_id = uuid4()
        inputs = {name: set((dependencies or {}).get(name, ())) for name in parameters}
        context = dict(self._run_context(), asset_context=AssetContext.from_task_and_inputs(
            task=task, task_run_id=task_run_id, task_inputs=inputs, copy_to_child_ctx=True).serialize())
        future = Client.submit(  # Dask's own submit: PrefectDaskClient.submit would serialize it all again
            self.client, run_task_on_worker, key=f"{task.name}-{task_run_id.hex}", pure=False,
            task=task, task_run_id=task_run_id, parameters=parameters, wait_for=None, return_type="state",
            dependencies=inputs, context=context)
        return PrefectDaskFuture(wrapped_future=future, task_run_id=task_run_id)

    def _run_context(self) -> dict:
        """serialize_context() without a task's asset context, made again only when the flow run,
        task run or settings context is another object than last time, or the tags differ."""
        tags = TagsContext.get()  # a new object on each get() when no tags are set: compared by value
        current = (EngineContext.get(), TaskRunContext.get(), SettingsContext.get())
        tag_set = frozenset(tags.current_tags) if tags else frozenset()
        made_from = (*map(id, current), tag_set)
        with self._context_lock:
            if made_from != self._context_of:
                self._serialized = serialize_context()
                self._context_of, self._objects = made_from, current
            return self._serialized
