"""Run a plan's jobs in dependency order, several at a time (one CPU core each).

A job starts once every run it requires has finished; with `workers` > 1 the jobs run in
spawned processes (each sets its own torch thread count), so a 2-core machine trains two
independent runs at once. A failed job stops the scheduling and re-raises its error, one
line, after the running jobs end; finished runs stay on disk and are reused next time."""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Callable

log = logging.getLogger(__name__)


def run_plan(runs: list, job: Callable, workers: int = 1, **kwargs) -> dict:
    """{run name: job(run, done=..., **kwargs)} for every run; `done` holds the results of
    the finished runs (a CPU-matched run reads the matched runs' costs from it)."""
    names = {r.name for r in runs}
    for r in runs:
        missing = [d for d in r.requires() if d not in names]
        if missing:
            raise ValueError(f"run {r.name} requires {', '.join(missing)}, which the plan does not have")
    done: dict = {}
    # runs others start from (U) go first, so the chain is not left waiting for a core
    needed = {d for r in runs for d in r.requires()}
    pending = sorted(runs, key=lambda r: r.name not in needed)
    if workers <= 1:
        while pending:
            run = next(r for r in pending if all(d in done for d in r.requires()))
            pending.remove(run)
            done[run.name] = job(run, done=dict(done), **kwargs)
        return done
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        running: dict = {}
        while pending or running:
            ready = [r for r in pending if all(d in done for d in r.requires())]
            for run in ready[: max(0, workers - len(running))]:
                pending.remove(run)
                running[pool.submit(job, run, done=dict(done), **kwargs)] = run
            if not running:
                raise RuntimeError("no runnable job: the plan has a dependency cycle")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                run = running.pop(future)
                done[run.name] = future.result()  # re-raises the job's error here
    return done
