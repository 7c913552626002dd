"""PNG figures for training runs and evaluation reports (matplotlib, Agg canvas).

* :func:`plot_learning_curves`: the training loss and the validation Dice (per label and mean)
  against the iteration, from a run's ``train_log.jsonl`` records.
* :func:`plot_overlay`: axial, coronal and sagittal slices through the centre of the foreground
  with the reference (solid) and predicted (dashed) contours in the labels' colours.

Slices are shown in the radiological convention -- patient's right on the left of the image,
anterior and superior at the top, anterior on the left in the sagittal view -- after the lossless
reorientation of the grid to RAS, with the voxels' true aspect ratio. The figures are drawn with
matplotlib's object API and its Agg canvas, never pyplot, so the process's backend is untouched.
matplotlib is an optional dependency (the ``train`` extra): check :func:`matplotlib_available`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np

from MedSegAILib.geometry import Grid, Reorientation

VIEWS = ("axial", "coronal", "sagittal")


def matplotlib_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_learning_curves(records: Sequence[dict], out: Path, title: str = "") -> Path:
    """Loss (and, when the run was validated, validation Dice) against the iteration, as a PNG."""
    losses = [r for r in records if "loss" in r]
    validations = [r for r in records if "val_dice" in r]
    figure = _figure(11 if validations else 6, 4)
    axes = figure.subplots(1, 2 if validations else 1, squeeze=False)[0]
    axes[0].plot([r["iteration"] for r in losses], [r["loss"] for r in losses], color="tab:blue")
    axes[0].set(xlabel="iteration", ylabel="training loss", title="Training loss")
    if validations:
        iterations = [r["iteration"] for r in validations]
        for label in validations[0]["val_dice"]:
            axes[1].plot(iterations, [r["val_dice"][label] for r in validations], marker=".", label=label)
        axes[1].plot(iterations, [r["val_mean_dice"] for r in validations], color="black", linewidth=2, label="mean")
        best = max(validations, key=lambda r: r["val_mean_dice"])
        axes[1].axvline(best["iteration"], color="grey", linestyle=":", label=f"best (it {best['iteration']})")
        axes[1].set(xlabel="iteration", ylabel="Dice", ylim=(0, 1), title="Validation Dice (model grid)")
        axes[1].legend(fontsize="small")
    for ax in axes:
        ax.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    return out


def foreground_centre(*masks: np.ndarray) -> tuple[int, ...]:
    """Centre (rounded voxel index) of the first non-empty mask; the array centre if all are empty.

    Example:
        >>> m = np.zeros((4, 6, 8), bool); m[1:3, 2:4, 6:8] = True
        >>> foreground_centre(np.zeros_like(m), m), foreground_centre(np.zeros_like(m))
        ((2, 2, 6), (2, 3, 4))
    """
    for mask in masks:
        if mask.any():
            return tuple(int(round(float(c.mean()))) for c in np.nonzero(mask))
    return tuple(s // 2 for s in masks[0].shape)


def _view(array: np.ndarray, view: str, centre: Sequence[int]) -> np.ndarray:
    """A slice of a canonical (z, y, x) RAS array, flipped for display (rows top-down, columns
    left-right in the radiological convention)."""
    z, y, x = centre
    plane = {"axial": array[z], "coronal": array[:, y, :], "sagittal": array[:, :, x]}[view]
    return plane[::-1, ::-1]


def plot_overlay(image: np.ndarray, reference: np.ndarray, prediction: np.ndarray, grid: Grid,
                 labels: Sequence[tuple[int, str, Sequence[int]]], out: Path, title: str = "") -> Path:
    """Axial, coronal and sagittal slices through the reference foreground's centre with contours.

    Args:
        image, reference, prediction: ``(k, j, i)`` arrays on ``grid`` (the scan's own grid).
        labels: ``(value, name, colour 0-255 RGB)`` of each label to draw.
    """
    reorient = Reorientation.to_ras(grid)
    image, reference, prediction = (np.asarray(reorient.apply(a)) for a in (image, reference, prediction))
    sx, sy, sz = reorient.target.spacing
    aspect = {"axial": sy / sx, "coronal": sz / sx, "sagittal": sz / sy}
    centre = foreground_centre(reference > 0, prediction > 0)
    low, high = np.percentile(image, (0.5, 99.5))
    figure = _figure(13, 4.8)
    for ax, view in zip(figure.subplots(1, 3), VIEWS):
        ax.imshow(_view(image, view, centre), cmap="gray", vmin=low, vmax=high, aspect=aspect[view],
                  interpolation="nearest")
        for value, _, colour in labels:
            rgb = tuple(c / 255 for c in colour)
            for volume, style in ((reference, "solid"), (prediction, "dashed")):
                mask = _view(volume, view, centre) == value
                if mask.any() and not mask.all():
                    ax.contour(mask.astype(np.float32), levels=[0.5], colors=[rgb], linestyles=style, linewidths=1.2)
        ax.set_title(view)
        ax.set_axis_off()
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=tuple(c / 255 for c in colour), label=name) for _, name, colour in labels]
    handles += [Line2D([], [], color="white", linestyle=s, label=f"{s}: {w}")
                for s, w in (("solid", "reference"), ("dashed", "prediction"))]
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), facecolor="0.2",
                  labelcolor="white", fontsize="small")
    figure.set_facecolor("black")
    if title:
        figure.suptitle(title, color="white")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, facecolor="black")
    return out
