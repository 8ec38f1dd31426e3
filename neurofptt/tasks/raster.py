"""A picture of one sample: its spike raster with the steps that have a target marked.

Looking at a sample is the quickest check that a task (built in, or a data file) is what it
should be: where the cues are, how dense the noise is, where the answer is asked for.  The
figure is drawn with matplotlib's object API (no global pyplot state), so it is safe in any
process, and saved straight to a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

#: the colour of the labelled steps' band
TARGET_COLOUR = "tab:orange"


def plot_raster(
    x: np.ndarray,
    y: np.ndarray,
    path: str | Path,
    *,
    groups: Sequence[str] = (),
    classes: Sequence[str] = (),
    title: str = "",
) -> None:
    """Save the raster of one sample to ``path`` (the format from its suffix: ``.png``,
    ``.svg``, ...).

    ``x`` is the sample's ``(T, C)`` spikes and ``y`` its per-step labels ``(T,)`` (``-1``: no
    target); the labelled steps are shaded and named by their class (``classes[label]`` if
    given).  ``groups`` names equal blocks of channels (the populations of
    :mod:`~neurofptt.tasks.populations`, bottom to top), which are separated by lines and
    labelled on the left."""
    x = np.asarray(x)
    y = np.asarray(y)
    steps, channels = x.shape
    fig = Figure(figsize=(8, 3), layout="constrained")
    ax = fig.add_subplot()
    t, c = np.nonzero(x)
    ax.scatter(t, c, s=1.5, marker="|", color="black", linewidths=0.6)
    labelled = np.flatnonzero(y >= 0)
    if len(labelled):
        ax.axvspan(labelled[0] - 0.5, labelled[-1] + 0.5, color=TARGET_COLOUR, alpha=0.25, lw=0)
        label = int(y[labelled[-1]])
        name = classes[label] if label < len(classes) else str(label)
        ax.text(labelled[-1], channels - 0.5, f"target: {name}", ha="right", va="bottom")
    if groups:
        size = channels / len(groups)
        for k in range(1, len(groups)):
            ax.axhline(k * size - 0.5, color="grey", lw=0.5)
        ax.set_yticks([(k + 0.5) * size - 0.5 for k in range(len(groups))], list(groups))
    else:
        ax.set_ylabel("input channel")
    ax.set_xlim(-0.5, steps - 0.5)
    ax.set_ylim(-0.5, channels - 0.5)
    ax.set_xlabel("step")
    if title:
        ax.set_title(title)
    fig.savefig(path, dpi=120)
