"""Training batches: a seeded, task-homogeneous batch sampler with a checkpointable
position, and the per-mode suffix texts the model is trained to predict.

Every global batch (batch_size × processes pairs) comes from one task, so in-batch
negatives are always of the same kind (docs/method.md §Training objective); each process
takes its own slice.
The order is a pure function of (seed, epoch), so the position (epoch, cursor) is
all a checkpoint needs to continue the exact same sequence."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

from plume_lite.curriculum import Stage, build_suffix, explicit_suffix
from plume_lite.errors import ConfigError


class TaskBatchSampler:
    def __init__(
        self, tasks: list[str], batch_size: int, num_processes: int = 1, rank: int = 0, seed: int = 0
    ):
        self.batch_size, self.num_processes, self.rank, self.seed = batch_size, num_processes, rank, seed
        self.by_task: dict[str, list[int]] = defaultdict(list)
        for i, task in enumerate(tasks):
            self.by_task[task].append(i)
        global_batch = batch_size * num_processes
        self.skipped = sorted(t for t, idx in self.by_task.items() if len(idx) < global_batch)
        if len(self.skipped) == len(self.by_task):
            raise ConfigError(
                f"no task has {global_batch} training pairs (batch_size {batch_size} × "
                f"{num_processes} processes); lower batch_size"
            )
        self.epoch, self.cursor = 0, 0
        self._plan = self._epoch_plan(0)

    def _epoch_plan(self, epoch: int) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + epoch)
        global_batch = self.batch_size * self.num_processes
        batches = []
        for task in sorted(self.by_task):  # sorted: independent of input order
            idx = list(self.by_task[task])
            rng.shuffle(idx)
            # the remainder is dropped: every batch has the full set of negatives and
            # every process the same batch size (the all-gather needs equal shapes)
            batches += [
                idx[i : i + global_batch] for i in range(0, len(idx) - global_batch + 1, global_batch)
            ]
        rng.shuffle(batches)
        return batches

    @property
    def batches_per_epoch(self) -> int:
        return len(self._plan)

    def next_batch(self) -> list[int]:
        """This process's pair indices of the next global batch (one task)."""
        if self.cursor >= len(self._plan):
            self.epoch, self.cursor = self.epoch + 1, 0
            self._plan = self._epoch_plan(self.epoch)
        batch = self._plan[self.cursor]
        self.cursor += 1
        return batch[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "cursor": self.cursor,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "num_processes": self.num_processes,
        }

    def load_state_dict(self, state: dict) -> None:
        if (state["seed"], state["batch_size"] * state["num_processes"]) != (
            self.seed,
            self.batch_size * self.num_processes,
        ):
            raise ConfigError(
                "the checkpoint's data order used another seed or global batch size; "
                "resume with the same settings"
            )
        self.epoch, self.cursor = state["epoch"], state["cursor"]
        self._plan = self._epoch_plan(self.epoch)


@dataclass
class Batch:
    task: str
    queries: list
    positives: list
    query_suffix: list | None  # suffix texts (None in direct mode)
    positive_suffix: list | None
    n_latent: int


def make_batch(pairs: list, mode: str, stage: Stage | None) -> Batch:
    """Items and suffix texts for `pairs` (one task) in `mode` at curriculum `stage`."""
    queries = [p.query for p in pairs]
    positives = [p.positive for p in pairs]
    if mode == "direct":
        return Batch(pairs[0].task, queries, positives, None, None, 0)
    if mode == "explicit":
        qs = [explicit_suffix(p.query_rationale, p.query_answer) for p in pairs]
        cs = [explicit_suffix(p.positive_rationale, p.positive_answer) for p in pairs]
        return Batch(pairs[0].task, queries, positives, qs, cs, 0)
    qs = [build_suffix(p.query_rationale, p.query_answer, stage)[1] for p in pairs]
    cs = [build_suffix(p.positive_rationale, p.positive_answer, stage)[1] for p in pairs]
    return Batch(pairs[0].task, queries, positives, qs, cs, stage.n_latent)
