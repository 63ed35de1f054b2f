"""Prefect's Dask task runner, submitting each task as impure.

prefect-dask submits with Dask's default `pure=True`, so Dask names every task by hashing its
function and arguments: a fresh wrapper closure, the chunk and Prefect's serialized context (all of
its settings), each time. The hash buys nothing here: every submission carries a new task-run id,
so no two keys could ever match. With `pure=False` Dask names the task with a random id instead;
this took about a third of the store process's CPU for handing out chunks (bench/judge_fanout.py).
Imported only when a stage fans out: distributed is slow to import.
"""

from __future__ import annotations

from prefect_dask import DaskTaskRunner
from prefect_dask.task_runners import PrefectDaskFuture


class ChunkTaskRunner(DaskTaskRunner):
    def submit(self, task, parameters, wait_for=None, dependencies=None):
        if not self._started:
            raise RuntimeError("The task runner must be started before submitting work.")
        # our chunks take no futures as parameters and wait for nothing, so there is nothing to swap
        # for Dask futures (DaskTaskRunner.submit walks the parameters for them)
        if wait_for or any(isinstance(value, PrefectDaskFuture) for value in parameters.values()):
            return super().submit(task, parameters, wait_for, dependencies)
        future = self.client.submit(task, parameters=parameters, dependencies=dependencies,
                                    return_type="state", pure=False)
        return PrefectDaskFuture(wrapped_future=future, task_run_id=future.task_run_id)
