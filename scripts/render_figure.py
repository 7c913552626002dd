"""Render the README picture from the demo's outputs (run scripts/demo.sh first):
axial and coronal slices of the CT with the segmentation, and the 3D surfaces."""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import slicerio  # noqa: E402
import vtk  # noqa: E402
from vtk.util.numpy_support import vtk_to_numpy  # noqa: E402

from MedSegAILib.geometry import Reorientation  # noqa: E402
from MedSegAILib.image import read_volume  # noqa: E402
from MedSegAILib.preprocessing import ct_window  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
out = REPO / "out" / "demo"
ct = read_volume(Path(slicerio.__file__).parent / "data" / "CTChest4.nrrd")
labels = read_volume(out / "CTChest4_labels.nii.gz").array
names = json.loads((out / "CTChest4_labels.json").read_text())["labels"]
colors = {x["value"]: np.array(x["color"]) / 255 for x in names}
# distinguish the two lungs in the picture (Slicer's lists give both lungs one colour)
for x in names:
    if x["name"] == "left lung":
        colors[x["value"]] = np.array([0.45, 0.62, 0.85])

# radiological display: RAS-canonical arrays (z, y, x), then patient right on the image's left,
# anterior (axial) and superior (coronal) at the top
canonical = Reorientation.to_ras(ct.grid)
image = ct_window(canonical.apply(ct.array), -1000, 600)
labels = canonical.apply(labels)
sx, sy, sz = canonical.target.spacing


def overlay(img2d, lab2d):
    rgb = np.repeat(img2d[..., None], 3, axis=-1)
    for value, color in colors.items():
        mask = lab2d == value
        rgb[mask] = 0.45 * rgb[mask] + 0.55 * color
    return rgb


fig = plt.figure(figsize=(12, 4.2), dpi=100, facecolor="black")
k = labels.shape[0] // 2 + 2
ax = fig.add_subplot(1, 3, 1)
ax.imshow(overlay(image[k], labels[k])[::-1, ::-1], aspect=sy / sx)
ax.set_title("axial", color="white")
j = int(np.argmax((labels > 0).sum(axis=(0, 2))))
ax = fig.add_subplot(1, 3, 2)
ax.imshow(overlay(image[:, j, :], labels[:, j, :])[::-1, ::-1], aspect=sz / sx)
ax.set_title("coronal", color="white")
ax3 = fig.add_subplot(1, 3, 3, projection="3d", facecolor="black")
for x in names:
    reader = vtk.vtkSTLReader()
    reader.SetFileName(str(out / "CTChest4_surfaces" / f"{x['name'].replace(' ', '_')}.stl"))
    reader.Update()
    poly = reader.GetOutput()
    pts = vtk_to_numpy(poly.GetPoints().GetData())
    tris = vtk_to_numpy(poly.GetPolys().GetConnectivityArray()).reshape(-1, 3)
    ax3.plot_trisurf(pts[:, 0], pts[:, 1], pts[:, 2], triangles=tris, color=colors[x["value"]], linewidth=0,
                     alpha=0.6 if "lung" in x["name"] else 1.0, shade=True)
ax3.view_init(elev=10, azim=-90)  # STL files are LPS: seen from the front, patient right on the left
ax3.set_box_aspect(np.ptp(pts, axis=0) * [1.6, 1.0, 1.2] / np.ptp(pts, axis=0).max())
ax3.set_title("3D surfaces", color="white")
for a in fig.axes:
    a.set_axis_off()
handles = [plt.Rectangle((0, 0), 1, 1, color=colors[x["value"]]) for x in names]
fig.legend(handles, [x["name"] for x in names], loc="lower center", ncol=4, facecolor="black", labelcolor="white",
           frameon=False)
target = REPO / "Resources" / "Screenshots" / "ct-chest-demo.png"
fig.savefig(target, facecolor="black", bbox_inches="tight")
print(target, file=sys.stderr)
