"""The host's rate of on-chip learning: derived from the task, optionally tuned over a small grid
of error shift offsets around it (a few epochs each in parallel processes, the best on the
validation split), and the run at it (:func:`learn_at_task_rate`).

The derived offset (:mod:`neurofptt.flow.onchip_rates`) sets the rate from the size of one
sample's update; a task can still learn best a factor of two or four either side of it.  Each
grid point is the first ``epochs`` epochs of the full run at that offset (the same start, split,
sample order and halving schedule), so the run goes on from the best point's last epoch
(:func:`~neurofptt.flow.onchip_train.train_onchip` with ``resume``) and learns exactly what a run
started at that offset would have: the grid's epochs are not learned twice.  Points are compared
on the best validation accuracy they reached; the test split plays no part.  Equal points go to
the one nearest the derived offset, then to the lower rate.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from neurofptt.flow.onchip_rates import DerivedRate
from neurofptt.flow.onchip_train import (
    OnchipHistory,
    Progress,
    Split,
    halving_period,
    learn,
    learning_hardware,
    train_onchip,
)
from neurofptt.learning.threads import available_cores, set_threads
from neurofptt.quant.network import QuantizedNetwork
from neurofptt.tasks.base import TaskData

#: the grid: the derived offset and this many either side (each step halves or doubles the rate)
TUNE_SPAN = 2
#: epochs learned at each grid point
TUNE_EPOCHS = 3


@dataclass(frozen=True)
class Tuned:
    """The tuning's outcome: the chosen offset, the run at it so far (to go on from) and one
    record per grid point (its offset, the validation accuracy of each epoch and the best)."""

    offset: int
    run: Progress
    grid: list[dict]


def grid_offsets(derived: int, span: int = TUNE_SPAN) -> list[int]:
    """``derived - span .. derived + span``, without the negative ones: the error shift can only
    lower the chip's rate."""
    return [offset for offset in range(derived - span, derived + span + 1) if offset >= 0]


def _one_thread() -> None:
    """Each worker learns with one torch thread: the grid's points are the parallel work."""
    set_threads(1)


def _learn_point(
    net: QuantizedNetwork, split: Split, epochs: int, seed: int, offset: int, halve_every: int
) -> Progress:
    return learn(net, split, epochs, seed=seed, shift_offset=offset, halve_every=halve_every)


def tune_offset(
    net: QuantizedNetwork,
    split: Split,
    derived: int,
    *,
    epochs: int,
    seed: int,
    halve_every: int,
    span: int = TUNE_SPAN,
    workers: int | None = None,
) -> Tuned:
    """Learn ``epochs`` epochs from ``net`` at every offset of :func:`grid_offsets` and keep the
    best on the validation split (the module docstring).  ``workers`` processes learn the points
    side by side (default: one per core, at most one per point); one runs them here in turn."""
    offsets = grid_offsets(derived, span)
    workers = min(len(offsets), workers or available_cores())
    jobs = [(net, split, epochs, seed, offset, halve_every) for offset in offsets]
    if workers == 1:
        runs = [_learn_point(*job) for job in jobs]
    else:
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=spawn, initializer=_one_thread) as pool:
            runs = list(pool.map(_learn_point, *zip(*jobs, strict=True)))
    best = max(
        range(len(offsets)),
        key=lambda n: (runs[n].val_accuracy, -abs(offsets[n] - derived), offsets[n]),
    )
    grid = [
        {
            "error_shift_offset": offset,
            "val_accuracy": run.val_accuracy,
            "val_history": [record["val_accuracy"] for record in run.records],
        }
        for offset, run in zip(offsets, runs, strict=True)
    ]
    return Tuned(offsets[best], runs[best], grid)


@dataclass(frozen=True)
class RateRun:
    """A run of :func:`learn_at_task_rate`: its history, the derivation from the task, the error
    shift offset the run started from, and the tuning (``None`` without it)."""

    history: OnchipHistory
    rate: DerivedRate
    offset: int
    tune: dict | None

    def record(self) -> dict:
        """What a run's record says about its rate."""
        return {"rate": self.rate.record(), "error_shift_offset": self.offset, "tune": self.tune}


def learn_at_task_rate(
    net: QuantizedNetwork,
    task: TaskData,
    rate: DerivedRate,
    *,
    epochs: int,
    seed: int,
    halvings: int,
    val_fraction: float,
    extra_offset: int = 0,
    tune: bool = False,
    run_dir: Path | None = None,
    progress: Callable[[dict[str, float]], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> RateRun:
    """Learn ``task`` on chip from ``net`` (its config's learning mode) at the error shift
    offset of ``rate`` (derived from the training samples on the core before its hidden rates
    were lowered: :func:`~neurofptt.flow.onchip.onchip_core`) plus ``extra_offset`` (adapting
    a trained network wants lower rates), halving ``halvings`` times over the ``epochs``; with
    ``tune`` the first :data:`TUNE_EPOCHS` epochs are learned over the grid around that offset
    and the run goes on from the best point (the module docstring).  ``log`` gets a line with
    the grid.  The other arguments are :func:`~neurofptt.flow.onchip_train.train_onchip`'s."""
    learning_hardware(net, None, task)
    offset = rate.derived_offset + extra_offset
    halve_every = halving_period(epochs, halvings)
    tuned, tune_epochs = None, min(TUNE_EPOCHS, epochs)
    if tune:
        split = Split.of(task, val_fraction, seed)
        tuned = tune_offset(
            net, split, offset, epochs=tune_epochs, seed=seed, halve_every=halve_every
        )
        if log is not None:
            shown = ", ".join(
                f"{point['error_shift_offset']}: {point['val_accuracy']:.3f}"
                for point in tuned.grid
            )
            log(f"tuned over {tune_epochs} epochs (offset: val) {shown}; on at {tuned.offset}")
    history = train_onchip(
        net,
        task,
        epochs=epochs,
        seed=seed,
        shift_offset=offset if tuned is None else tuned.offset,
        halve_every=halve_every,
        val_fraction=val_fraction,
        run_dir=run_dir,
        progress=progress,
        resume=None if tuned is None else tuned.run,
    )
    return RateRun(
        history=history,
        rate=rate,
        offset=offset if tuned is None else tuned.offset,
        tune=None if tuned is None else {"epochs": tune_epochs, "grid": tuned.grid},
    )
