"""What the surgeon sees: smooth 3D surfaces, per-structure opacity, surface export."""

from __future__ import annotations

from pathlib import Path

import slicer

# Bone and vessels stay opaque; organs around them become translucent so that what lies inside
# or behind them (a tumour, a vessel) stays visible.
OPAQUE_KEYWORDS = ("bone", "rib", "vertebra", "spine", "skull", "artery", "vein", "vessel", "tumor", "tumour", "lesion")
ORGAN_OPACITY = 0.45


def opacity_for(name: str) -> float:
    return 1.0 if any(k in name.lower() for k in OPAQUE_KEYWORDS) else ORGAN_OPACITY


def show_surgeon_3d(segmentation_node, smoothing: float = 0.7) -> None:
    """Smooth closed surfaces, structure-specific 3D opacity, all segments visible in 3D."""
    segmentation = segmentation_node.GetSegmentation()
    segmentation.SetConversionParameter("Smoothing factor", f"{smoothing:g}")
    segmentation_node.RemoveClosedSurfaceRepresentation()
    segmentation_node.CreateClosedSurfaceRepresentation()
    if segmentation_node.GetDisplayNode() is None:
        segmentation_node.CreateDefaultDisplayNodes()
    display = segmentation_node.GetDisplayNode()
    display.SetVisibility3D(True)
    display.SetPreferredDisplayRepresentationName3D("Closed surface")
    for n in range(segmentation.GetNumberOfSegments()):
        sid = segmentation.GetNthSegmentID(n)
        display.SetSegmentVisibility3D(sid, True)
        display.SetSegmentOpacity3D(sid, opacity_for(segmentation.GetSegment(sid).GetName()))


def export_surfaces(segmentation_node, folder: str | Path, file_format: str = "STL") -> list[Path]:
    """One surface file per segment, in LPS like Slicer's own export."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not segmentation_node.GetSegmentation().ContainsRepresentation("Closed surface"):
        segmentation_node.CreateClosedSurfaceRepresentation()
    before = set(folder.iterdir())
    ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsClosedSurfaceRepresentationToFiles(
        str(folder), segmentation_node, None, file_format.upper(), True, 1.0, False)
    if not ok:
        raise RuntimeError(f"Slicer could not export surfaces to {folder}")
    return sorted(set(folder.iterdir()) - before)
