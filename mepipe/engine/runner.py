"""Drive tasks through a backend: bounded submission, results as they come, worker crashes.

A worker process that dies (killed by the out-of-memory killer, a segfault in a decoder) does not stop
the build: its task is run once more as it is; if it crashes again it is split into single-clip tasks,
and a single clip that crashes a worker twice becomes a ``worker_crashed`` failed row. Any other
error of a task (e.g. the disk is full) stops the build: nothing of that task is listed, and the next
run builds its clips again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from mepipe.engine.tasks import Task, TaskResult, split_task
from mepipe.errors import MepipeError
from mepipe.logs import get_logger

log = get_logger(__name__)

MAX_STARTUP_CRASHES = 3
"""Worker pools that break this often before any task has finished stop the build (workers that
cannot even start: a missing package on a node, a script without ``if __name__ == "__main__":``)."""


class WorkersDieError(MepipeError):
    """Worker processes die before finishing any task."""


def run_tasks(
    backend,
    tasks: list[Task],
    on_result: Callable[[TaskResult], None],
    on_crashed: Callable[[Task, str], None],
    next_index: Callable[[int], int],
    *,
    poll_s: float = 0.5,
) -> None:
    """Run every task on ``backend``, calling ``on_result`` in the calling thread as each finishes.

    Args:
        backend: a started backend (:mod:`mepipe.engine.backends`).
        tasks: the planned tasks, submitted in order, at most ``2 * backend.slots`` at a time.
        on_result: receives each :class:`TaskResult`.
        on_crashed: receives a single-clip task whose worker died twice, and why.
        next_index: ``next_index(n)`` reserves ``n`` new shard numbers and returns the first (used
            when a crashed task is split).
        poll_s: how often the loop wakes up while waiting (signals are handled between waits).
    """
    queue = deque(tasks)
    inflight: dict = {}
    crashes: dict[int, int] = {}
    limit = max(1, 2 * backend.slots)
    health = {"breaks": 0, "done": 0}

    def broke(exc: BaseException) -> None:
        health["breaks"] += 1
        if not health["done"] and health["breaks"] >= MAX_STARTUP_CRASHES:
            raise WorkersDieError(
                f"the worker processes died {health['breaks']} times before finishing any task ({exc}); "
                "run with --workers 1 to see the error. A Python script that builds with several "
                'workers must be a file whose build call is under `if __name__ == "__main__":`'
            ) from None
        backend.recover()

    while queue or inflight:
        while queue and len(inflight) < limit:
            task = queue.popleft()
            try:
                inflight[backend.submit(task)] = task
            except backend.crash_types as exc:  # the pool broke between two submissions
                queue.appendleft(task)
                broke(exc)
        done = backend.wait(set(inflight), poll_s)
        for fut in done:
            task = inflight.pop(fut)
            try:
                result = fut.result()
            except backend.crash_types as exc:
                broke(exc)
                n = crashes[task.index] = crashes.get(task.index, 0) + 1
                why = f"{type(exc).__name__}: {exc}".strip()[:300]
                if n == 1 and backend.name == "local":
                    log.warning("a worker died on task %s (%s); running it again", task.name, why)
                    queue.appendleft(task)
                elif len(task.clips) > 1:
                    parts = split_task(task, next_index(len(task.clips)))
                    log.warning(
                        "task %s crashed its worker again (%s); building its %d clips one by one",
                        task.name,
                        why,
                        len(parts),
                    )
                    for part in parts:
                        crashes[part.index] = 1
                    queue.extendleft(reversed(parts))
                else:
                    on_crashed(task, why)
                continue
            health["done"] += 1
            on_result(result)
