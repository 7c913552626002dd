"""Headless 3D Slicer (the slicer-core wheel) for tests that check MedSegAI against Slicer itself.

Importing this module skips the importing test module when slicer-core is not installed.
Conventions as in MedSegAI: label arrays are ``(k, j, i)``, grids are 4x4 IJK->RAS matrices.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest


slicer = pytest.importorskip("slicer", reason="needs slicer-core (pip install -e '.[test]')")
import vtk  # noqa: E402  (after the skip: slicer-core brings the VTK build it needs)

from testing_support import asymmetric_structure, ras_of_voxels  # noqa: E402

TERMINOLOGY_TAG = "TerminologyEntry"
STATUS_TAG = "Segmentation.Status"
REFERENCE_GEOMETRY = "Reference image geometry"


# ----------------------------------------------------------------------------- scene
def make_headless_slicer(terminology_dir=None) -> SimpleNamespace:
    """An MRML scene with the application, colour, volumes, segmentations and terminologies
    logics; also sets ``slicer.mrmlScene`` and ``slicer.modules`` for ``slicer.util``."""
    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    colors = app.GetColorLogic()
    colors.SetMRMLScene(scene)
    colors.AddDefaultColorNodes()
    app.SetModuleLogic("Colors", colors)
    terminologies = slicer.vtkSlicerTerminologiesModuleLogic()
    if terminology_dir is not None:  # the default *.term.json load when the scene is set: set the folder first
        terminologies.SetModuleShareDirectory(str(terminology_dir))
    logics = {"segmentations": slicer.vtkSlicerSegmentationsModuleLogic(),
              "volumes": slicer.vtkSlicerVolumesLogic(), "terminologies": terminologies}
    for name, logic in logics.items():
        logic.SetMRMLScene(scene)
        logic.SetMRMLApplicationLogic(app)
        app.SetModuleLogic(name.capitalize(), logic)
    slicer.mrmlScene = scene
    slicer.modules = SimpleNamespace(**{n: SimpleNamespace(logic=lambda lg=lg: lg) for n, lg in logics.items()})
    return SimpleNamespace(scene=scene, app=app, **logics)


def close_headless_slicer(h: SimpleNamespace) -> None:
    h.scene.Clear(1)
    del slicer.mrmlScene, slicer.modules


# ----------------------------------------------------------------------------- matrices
def vtk_matrix(m) -> vtk.vtkMatrix4x4:
    vm = vtk.vtkMatrix4x4()
    vm.DeepCopy(np.asarray(m, dtype=float).ravel().tolist())
    return vm


def parse_reference_geometry(text: str) -> tuple[np.ndarray, list[int]]:
    """Slicer's "Reference image geometry" string -> (IJK->RAS, extent [i0, i1, j0, j1, k0, k1])."""
    values = text.rstrip(";").split(";")
    assert len(values) == 22, text
    return np.array(values[:16], dtype=float).reshape(4, 4), [int(v) for v in values[16:]]


def reference_grid(seg_node) -> tuple[np.ndarray, tuple[int, int, int]] | None:
    """(IJK->RAS of voxel (0,0,0), shape (k, j, i)) of a segmentation's reference image geometry."""
    text = seg_node.GetSegmentation().GetConversionParameter(REFERENCE_GEOMETRY)
    if not text:
        return None
    m, e = parse_reference_geometry(text)
    m[:3, 3] = (m @ np.array([e[0], e[2], e[4], 1.0]))[:3]
    return m, (e[5] - e[4] + 1, e[3] - e[2] + 1, e[1] - e[0] + 1)


def volume_node(h, array, ijk_to_ras, class_name="vtkMRMLScalarVolumeNode"):
    node = h.scene.AddNewNodeByClass(class_name)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array))
    node.SetIJKToRASMatrix(vtk_matrix(ijk_to_ras))
    return node


# ----------------------------------------------------------------------------- segmentations
def segment_tag(segment, key: str) -> str | None:
    out = vtk.reference("")  # GetTag(key, std::string&) fills an out-argument
    return str(out) if segment.GetTag(key, out) else None


def segments(seg_node) -> list[SimpleNamespace]:
    """The segments in file/segmentation order, as plain values."""
    seg = seg_node.GetSegmentation()
    result = []
    for n in range(seg.GetNumberOfSegments()):
        sid = seg.GetNthSegmentID(n)
        s = seg.GetSegment(sid)
        result.append(SimpleNamespace(
            id=sid, name=s.GetName(), color=tuple(s.GetColor()), label_value=s.GetLabelValue(),
            layer=seg.GetLayerIndex(sid), terminology=segment_tag(s, TERMINOLOGY_TAG), status=segment_tag(s, STATUS_TAG)))
    return result


def masks_on_grid(h, seg_node, ijk_to_ras, shape_kji) -> dict[str, np.ndarray]:
    """Segment ID -> boolean ``(k, j, i)`` mask on the given grid (Slicer crops segments after reading)."""
    reference = volume_node(h, np.zeros(shape_kji, np.uint8), ijk_to_ras)
    return {s.id: slicer.util.arrayFromSegmentBinaryLabelmap(seg_node, s.id, reference).astype(bool)
            for s in segments(seg_node)}


def read_seg_nrrd(h, path):
    """Read a ``.seg.nrrd`` with Slicer's own reader (vtkMRMLSegmentationStorageNode)."""
    seg_node = h.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(seg_node), f"Slicer cannot read {path}"
    return seg_node


def write_seg_nrrd(seg_node, path) -> None:
    """Write with Slicer's own writer (uncropped, gzip: Slicer's defaults)."""
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    assert storage.WriteData(seg_node), f"Slicer cannot write {path}"


def import_label_map(h, labels, ijk_to_ras, infos=()):
    """A segmentation made by Slicer from a label map (one segment per label value, ascending);
    ``infos`` (MedSegAI SegmentInfo) set the name, colour and tags of their label."""
    label_node = volume_node(h, labels, ijk_to_ras, "vtkMRMLLabelMapVolumeNode")
    seg_node = h.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    seg_node.SetReferenceImageGeometryParameterFromVolumeNode(label_node)
    assert h.segmentations.ImportLabelmapToSegmentationNode(label_node, seg_node)
    h.scene.RemoveNode(label_node)
    by_label = {info.label_value: info for info in infos}
    seg = seg_node.GetSegmentation()
    for n in range(seg.GetNumberOfSegments()):
        s = seg.GetNthSegment(n)
        info = by_label.get(s.GetLabelValue())
        if info is not None:
            s.SetName(info.name)
            s.SetNameAutoGenerated(False)
            s.SetColor(*info.color)
            s.SetColorAutoGenerated(False)
            s.SetTag(TERMINOLOGY_TAG, info.terminology_entry)
            s.SetTag(STATUS_TAG, info.status)
    return seg_node


def segment_ids_by_label(seg_node) -> dict[int, str]:
    return {s.label_value: s.id for s in segments(seg_node)}


# ----------------------------------------------------------------------------- surfaces and statistics
def closed_surfaces(seg_node, smoothing: float = 0.5, decimation: float = 0.0) -> dict[int, vtk.vtkPolyData]:
    """Label value -> Slicer's closed surface representation for the given conversion parameters."""
    seg = seg_node.GetSegmentation()
    seg.SetConversionParameter("Smoothing factor", str(smoothing))
    seg.SetConversionParameter("Decimation factor", str(decimation))
    seg_node.RemoveClosedSurfaceRepresentation()
    assert seg_node.CreateClosedSurfaceRepresentation()
    result = {}
    for label, sid in segment_ids_by_label(seg_node).items():
        poly = vtk.vtkPolyData()
        seg_node.GetClosedSurfaceRepresentation(sid, poly)
        result[label] = poly
    return result


def point_array_names(poly) -> list:
    data = poly.GetPointData()
    return [data.GetArrayName(n) for n in range(data.GetNumberOfArrays())]


def mass_properties(poly) -> tuple[float, float]:
    """(surface area mm², volume mm³), as Slicer's Segment Statistics computes them."""
    props = vtk.vtkMassProperties()
    props.SetInputData(poly)
    props.Update()
    return props.GetSurfaceArea(), props.GetVolume()


def labelmap_statistics(seg_node, segment_id) -> SimpleNamespace:
    """Voxel count, volume (mm³) and RAS centroid of a segment, computed as Slicer's Segment
    Statistics (LabelmapSegmentStatisticsPlugin) does: vtkImageAccumulate over the segment's binary
    labelmap, voxel volume = product of its spacing, centroid from vtkITKLabelShapeStatistics on the
    image (origin, spacing) with the direction matrix set."""
    image = slicer.vtkOrientedImageData()
    seg_node.GetBinaryLabelmapRepresentation(segment_id, image)
    stencil = vtk.vtkImageToImageStencil()
    stencil.SetInputData(image)
    stencil.ThresholdByUpper(1)
    stencil.Update()
    accumulate = vtk.vtkImageAccumulate()
    accumulate.SetInputData(image)
    accumulate.SetStencilData(stencil.GetOutput())
    accumulate.Update()
    directions = vtk.vtkMatrix4x4()
    image.GetDirectionMatrix(directions)
    shape = slicer.vtkITKLabelShapeStatistics()
    shape.SetInputData(image)
    shape.SetDirections(directions)
    shape.Update()
    table = shape.GetOutput()
    assert table.GetNumberOfRows() == 1, "a segment's binary labelmap holds one label (1)"
    return SimpleNamespace(voxel_count=accumulate.GetVoxelCount(),
                           volume_mm3=accumulate.GetVoxelCount() * float(np.prod(image.GetSpacing())),
                           centroid_ras=np.array(table.GetColumnByName("Centroid").GetTuple3(0)))


# ----------------------------------------------------------------------------- files and terminology
def nrrd_header(path) -> dict[str, str]:
    """Header fields (``key: value``) and key/value pairs (``key:=value``) of a NRRD file."""
    data = Path(path).read_bytes()
    fields = {}
    for line in data[: data.index(b"\n\n")].decode("utf-8").splitlines()[1:]:
        if line.startswith("#"):
            continue
        key, sep, value = line.partition(":=")
        if not sep or ":" in key:
            key, _, value = line.partition(": ")
        fields[key] = value
    return fields


def conversion_parameters(header_value: str) -> dict[str, str]:
    """``name|value|description&...`` -> {name: value}."""
    return {p.split("|")[0]: p.split("|")[1] for p in header_value.split("&") if p}


def recommended_terminology(h, entry: str):
    """Slicer's look-up of a TerminologyEntry string in the loaded terminologies:
    (recommended RGB 0-255, 3D Slicer label, entry re-serialized after the look-up).
    With a type modifier (e.g. Lung + Right) the modifier carries the colour and label."""
    term = slicer.vtkSlicerTerminologyEntry()
    assert h.terminologies.DeserializeTerminologyEntry(entry, term)
    h.terminologies.UpdateEntryFromLoadedTerminologies(term, [], [])
    modifier = term.GetTypeModifierObject()
    code = modifier if modifier.GetCodeValue() else term.GetTypeObject()
    return (tuple(code.GetRecommendedDisplayRGBValue()), code.GetSlicerLabel(),
            h.terminologies.SerializeTerminologyEntry(term))


# ----------------------------------------------------------------------------- label maps
def ball(volume, radius_mm: float, centre_ijk) -> np.ndarray:
    """Voxels whose centre lies within ``radius_mm`` of the centre of voxel ``centre_ijk``."""
    centre = (volume.ijk_to_ras @ np.r_[np.asarray(centre_ijk, float), 1.0])[:3]
    return ((ras_of_voxels(volume) - centre) ** 2).sum(axis=-1) <= radius_mm ** 2


def organs(volume) -> np.ndarray:
    """uint8 label map with labels 1 (L-shaped, no mirror symmetry), 3 (box) and 7 (a corner
    block touching three faces of the volume)."""
    labels = np.zeros(volume.array.shape, np.uint8)
    labels[2:6, 3:9, 20:31] = 3
    labels[asymmetric_structure(volume)] = 1
    labels[-3:, -4:, :5] = 7
    assert set(np.unique(labels)) == {0, 1, 3, 7}
    return labels
