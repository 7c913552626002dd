"""Small MSD / nnU-Net style data sets written with SimpleITK, for the training package's tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def sphere_case(size=(24, 24, 24), spacing=(1.5, 1.5, 2.0), centre=None, radius_mm=9.0, seed=0,
                background=-800.0, foreground=300.0, noise=30.0):
    """A 'CT' (file axes x, y, z = ``size``) holding a bright sphere, and its label map (value 1)."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = size
    centre = centre if centre is not None else (nx / 2 - 0.5, ny / 2 - 0.5, nz / 2 - 0.5)
    k, j, i = np.mgrid[0:nz, 0:ny, 0:nx].astype(float)
    d2 = (((i - centre[0]) * spacing[0]) ** 2 + ((j - centre[1]) * spacing[1]) ** 2
          + ((k - centre[2]) * spacing[2]) ** 2)
    label = (d2 <= radius_mm ** 2).astype(np.uint8)
    image = np.where(label > 0, foreground, background) + rng.normal(0, noise, label.shape)
    return image.astype(np.int16), label


def to_image(array: np.ndarray, spacing, origin=(0.0, 0.0, 0.0), direction=None) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    if direction is not None:
        image.SetDirection(tuple(float(d) for d in direction))
    return image


def write_dataset(root: Path, cases: int = 3, size=(24, 24, 24), spacing=(1.5, 1.5, 2.0), ending=".nii.gz",
                  channel="CT", labels=None, name="Dataset001_Sphere") -> Path:
    """``root`` with dataset.json, imagesTr/<case>_0000<ending>, labelsTr/<case><ending>."""
    root = Path(root)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    labels = labels or {"background": 0, "sphere": 1}
    (root / "dataset.json").write_text(json.dumps({
        "name": name, "channel_names": {"0": channel}, "labels": labels, "numTraining": cases,
        "file_ending": ending}, indent=2))
    for n in range(cases):
        shift = (n - cases // 2) * 1.5
        centre = (size[0] / 2 - 0.5 + shift, size[1] / 2 - 0.5 - shift, size[2] / 2 - 0.5)
        image, label = sphere_case(size, spacing, centre=centre, seed=n)
        write_case(root, f"case_{n:03d}", image, label, spacing, ending)
    return root


def write_case(root: Path, name: str, image: np.ndarray, label: np.ndarray, spacing, ending=".nii.gz",
               label_spacing=None, label_origin=(0.0, 0.0, 0.0)) -> None:
    sitk.WriteImage(to_image(image, spacing), str(root / "imagesTr" / f"{name}_0000{ending}"), True)
    sitk.WriteImage(to_image(label, label_spacing or spacing, label_origin),
                    str(root / "labelsTr" / f"{name}{ending}"), True)
