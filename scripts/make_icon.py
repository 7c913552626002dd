"""Draw the extension icon (Resources/Icons/MedSegAI.png, 128x128): a CT-like slice with two
segmented 'lungs' and their contours. Run once; the PNG is committed."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

y, x = np.mgrid[-1:1:256j, -1:1:256j]
body = (x / 0.9) ** 2 + (y / 0.7) ** 2 < 1
right = ((x + 0.38) / 0.28) ** 2 + (y / 0.45) ** 2 < 1
left = ((x - 0.38) / 0.26) ** 2 + (y / 0.43) ** 2 < 1
image = np.where(body, 0.55, 0.05) - 0.45 * (right | left)
fig = plt.figure(figsize=(1.28, 1.28), dpi=100)
ax = fig.add_axes([0, 0, 1, 1])
ax.imshow(image, cmap="gray", vmin=0, vmax=1)
overlay = np.zeros((*image.shape, 4))
overlay[right] = (0.77, 0.65, 0.57, 0.85)
overlay[left] = (0.31, 0.72, 0.88, 0.85)
ax.imshow(overlay)
ax.contour(right, levels=[0.5], colors=["#ffcf6b"], linewidths=1.2)
ax.contour(left, levels=[0.5], colors=["#9ff0ff"], linewidths=1.2)
ax.axis("off")
out = Path(__file__).resolve().parents[1] / "Resources" / "Icons" / "MedSegAI.png"
fig.savefig(out, dpi=100)
print(out)
