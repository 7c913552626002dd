"""The model card: a JSON document that says everything needed to run and judge a model.

The card is validated against ``model_card.schema.json`` and then read into small frozen
dataclasses, so the rest of the code never handles raw dictionaries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

from ..errors import BundleError

SCHEMA_PATH = Path(__file__).with_name("model_card.schema.json")


@lru_cache(maxsize=1)
def card_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Code:
    """A coded concept ``scheme^value^meaning`` (DICOM / SNOMED CT)."""

    scheme: str
    value: str
    meaning: str

    def __str__(self) -> str:
        return f"{self.scheme}^{self.value}^{self.meaning}"


@dataclass(frozen=True)
class Terminology:
    category: Code
    type: Code
    modifier: Code | None = None
    context: str = "Segmentation category and type - 3D Slicer General Anatomy list"
    region: Code | None = None
    region_modifier: Code | None = None
    region_context: str = "Anatomic codes - DICOM master list"


@dataclass(frozen=True)
class PostProcessing:
    largest_components: int | None = None
    min_island_ml: float = 0.0
    fill_holes: bool = False
    opening_mm: float = 0.0  # cut bridges thinner than about twice this before counting components
    inside_body_hu: float | None = None  # CT: drop voxels in air below this that reaches a slice's edge (body.py)


@dataclass(frozen=True)
class Label:
    value: int
    name: str
    color: tuple[int, int, int]
    terminology: Terminology
    postprocessing: PostProcessing = PostProcessing()

    @property
    def color_float(self) -> tuple[float, float, float]:
        return tuple(c / 255.0 for c in self.color)  # type: ignore[return-value]


@dataclass(frozen=True)
class InputSpec:
    name: str
    modality: str
    name_pattern: str = ""
    description: str = ""


@dataclass(frozen=True)
class Normalization:
    """One intensity normalisation scheme (``ct_window``, ``percentile_zscore`` or ``none``)."""

    type: str
    window: tuple[float, float] | None = None
    lower: float = 0.5
    upper: float = 99.5
    nonzero: bool = False


@dataclass(frozen=True)
class Preprocessing:
    """Spatial and intensity preprocessing shared by training and inference.

    ``normalization`` is the card's default; ``input_normalizations`` holds one resolved entry per
    card input (the input's own ``normalization`` or the default), so that mixed-modality models
    (CT + PET, T1 + FLAIR) normalise each channel its own way. It is empty for a ``Preprocessing``
    built in code without inputs: every channel then takes the default.
    """

    normalization: Normalization
    target_spacing: tuple[float, float, float] | None = None
    interpolation: str = "linear"
    orientation: str = "RAS"
    input_normalizations: tuple[Normalization, ...] = ()

    def normalization_for(self, index: int) -> Normalization:
        """The normalisation of input channel ``index`` (0-based, card input order)."""
        if not self.input_normalizations:
            return self.normalization
        return self.input_normalizations[index]


@dataclass(frozen=True)
class InferenceSettings:
    patch_size: tuple[int, int, int]
    overlap: float = 0.25
    blending: str = "gaussian"
    padding: str = "constant"  # sides shorter than the patch: zeros, or "replicate" the border
    tta_flips: tuple[tuple[int, ...], ...] = ()
    sw_batch_size: int = 1
    cpu_runtime: str = "torch"  # the faster runtime on a CPU, as measured for this network


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Applicability:
    spacing_mm: tuple[float, float] | None = None
    min_field_of_view_mm: tuple[float, float, float] | None = None
    on_mismatch: str = "warn"


@dataclass(frozen=True)
class ModelCard:
    """A validated model card. ``raw`` keeps the JSON document for display and re-export."""

    id: str
    version: str
    title: str
    description: str
    modality: str
    inputs: tuple[InputSpec, ...]
    labels: tuple[Label, ...]
    network: NetworkSpec
    preprocessing: Preprocessing
    inference: InferenceSettings
    license_name: str
    commercial_use: bool | None
    weights_file: str
    applicability: Applicability
    variants: dict
    raw: dict
    lateral_pairs: tuple[tuple[int, int], ...] = ()  # (right, left) values split at the midline
    lateral_mirrored_component: bool = False  # each side keeps its component that mirrors onto the other
    # label value -> (expected RAS offset from the input's nonzero centroid, length scale), both mm
    lateral_position_prior: dict[int, tuple[tuple[float, float, float], float]] = field(default_factory=dict)
    onnx_graph_file: str | None = None  # the network as ONNX, weights in weights_file (see onnx_inference)

    @property
    def channel_values(self) -> tuple[int, ...]:
        """Label value of each network output channel: 0 (background), then each label in card
        order, except the left label of each lateral pair (its structure is in the right label's
        channel until :func:`MedSegAILib.lateralization.split_at_midline` splits it)."""
        left = {left for _, left in self.lateral_pairs}
        return (0, *(label.value for label in self.labels if label.value not in left))

    @property
    def num_classes(self) -> int:
        """Network output channels (see :attr:`channel_values`)."""
        return len(self.channel_values)

    def label_by_name(self, name: str) -> Label:
        for label in self.labels:
            if label.name.lower() == name.lower():
                return label
        raise BundleError(
            f"model {self.id} has no label named {name!r}",
            "labels of this model: " + ", ".join(label.name for label in self.labels),
        )

    def variant(self, name: str) -> "ModelCard":
        """The card with the overrides of variant ``name`` (e.g. ``"fast"``) applied."""
        if name not in self.variants:
            offered = ", ".join(self.variants) or "none"
            raise BundleError(f"model {self.id} offers no {name!r} variant", f"variants of this model: {offered}")
        v = self.variants[name]
        card = self
        if "weights" in v:  # a graph's weights live in one weights file: other weights, other graph
            card = replace(card, weights_file=v["weights"], onnx_graph_file=v.get("onnx_graph"))
        if "network" in v:
            card = replace(card, network=NetworkSpec(v["network"]["name"], dict(v["network"]["args"])))
        if "target_spacing" in v:
            card = replace(card, preprocessing=replace(card.preprocessing, target_spacing=tuple(v["target_spacing"])))
        if "patch_size" in v:
            card = replace(card, inference=replace(card.inference, patch_size=tuple(v["patch_size"])))
        return card

    def summary(self) -> str:
        names = ", ".join(label.name for label in self.labels)
        lic = self.license_name + ("" if self.commercial_use is not False else " (non-commercial)")
        return f"{self.id} {self.version}: {self.title} [{self.modality}] labels: {names}; license: {lic}"


def _code(v: list | None) -> Code | None:
    return Code(*v) if v else None


def _normalization(n: dict, where: str, source: str) -> Normalization:
    """A schema-valid normalisation object, with the range checks the schema cannot express.

    Raises:
        BundleError: naming ``where`` (e.g. ``inputs/1/normalization``) when a range is empty, which
            would divide by zero (window) or clip every voxel to one value (percentiles).
    """
    window = tuple(n["window"]) if "window" in n else None
    spec = Normalization(n["type"], window, n.get("lower", 0.5), n.get("upper", 99.5), n.get("nonzero", False))
    if window is not None and not window[0] < window[1]:
        raise BundleError(f"{source} is invalid at {where}/window: {list(window)} is not [low, high] with low < high",
                          "fix the card or re-export the bundle")
    if spec.type == "percentile_zscore" and not spec.lower < spec.upper:
        raise BundleError(f"{source} is invalid at {where}: lower ({spec.lower}) is not below upper ({spec.upper})",
                          "fix the card or re-export the bundle")
    return spec


def parse_card(document: dict, source: str = "model card") -> ModelCard:
    """Validate ``document`` against the schema and read it into a :class:`ModelCard`.

    Raises:
        BundleError: naming the first schema violation and where it is.
    """
    validator = jsonschema.Draft202012Validator(card_schema())
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise BundleError(f"{source} is invalid at {where}: {err.message}", "fix the card or re-export the bundle")
    d = document
    labels = []
    for lab in d["labels"]:
        t = lab["terminology"]
        term = Terminology(
            category=_code(t["category"]),
            type=_code(t["type"]),
            modifier=_code(t.get("modifier")),
            context=t.get("context", Terminology.context),
            region=_code(t.get("region")),
            region_modifier=_code(t.get("region_modifier")),
            region_context=t.get("region_context", Terminology.region_context),
        )
        pp = lab.get("postprocessing", {})
        labels.append(Label(lab["value"], lab["name"], tuple(lab["color"]), term, PostProcessing(
            pp.get("largest_components"), float(pp.get("min_island_ml", 0.0)), bool(pp.get("fill_holes", False)),
            float(pp.get("opening_mm", 0.0)),
            None if pp.get("inside_body_hu") is None else float(pp["inside_body_hu"]))))
    values = [lab.value for lab in labels]
    if len(set(values)) != len(values):
        raise BundleError(f"{source}: label values are not unique: {values}", "give every label its own value")
    names = [lab.name.lower() for lab in labels]
    if len(set(names)) != len(names):
        raise BundleError(f"{source}: label names are not unique", "give every label its own name")
    body_labels = [lab.name for lab in labels if lab.postprocessing.inside_body_hu is not None]
    if body_labels and d["inputs"][0]["modality"] != "CT":
        raise BundleError(f"{source}: labels {', '.join(body_labels)} ask for inside_body_hu, which needs CT "
                          f"(Hounsfield units) as the first input, not {d['inputs'][0]['modality']}",
                          "drop inside_body_hu from those labels' postprocessing")
    lateralization = d.get("lateralization", {})
    pairs = tuple((int(r), int(left)) for r, left in lateralization.get("pairs", []))
    _check_lateral_pairs(pairs, labels, source)
    position_prior = _lateral_position_prior(lateralization, pairs, source)
    p = d["preprocessing"]
    default = _normalization(p["normalization"], "preprocessing/normalization", source)
    per_input = tuple(_normalization(i["normalization"], f"inputs/{k}/normalization", source)
                      if "normalization" in i else default for k, i in enumerate(d["inputs"]))
    inf = d["inference"]
    if inf.get("cpu_runtime") == "onnxruntime" and "onnx_graph" not in d["files"]:
        raise BundleError(f"{source}: inference.cpu_runtime is onnxruntime but files.onnx_graph names no graph",
                          "add the graph (medsegai_training.onnx_export --into-bundle) or drop cpu_runtime")
    app = d.get("applicability", {})
    lic = d["license"]
    return ModelCard(
        id=d["id"], version=d["version"], title=d["title"], description=d["description"], modality=d["modality"],
        inputs=tuple(InputSpec(i["name"], i["modality"], i.get("name_pattern", ""), i.get("description", ""))
                     for i in d["inputs"]),
        labels=tuple(labels),
        network=NetworkSpec(d["network"]["name"], dict(d["network"]["args"])),
        preprocessing=Preprocessing(
            normalization=default,
            target_spacing=tuple(p["target_spacing"]) if p.get("target_spacing") else None,
            interpolation=p.get("interpolation", "linear"),
            input_normalizations=per_input,
        ),
        inference=InferenceSettings(
            patch_size=tuple(inf["patch_size"]), overlap=inf.get("overlap", 0.25),
            blending=inf.get("blending", "gaussian"), padding=inf.get("padding", "constant"),
            tta_flips=tuple(tuple(f) for f in inf.get("tta_flips", [])),
            sw_batch_size=inf.get("sw_batch_size", 1), cpu_runtime=inf.get("cpu_runtime", "torch"),
        ),
        license_name=lic["name"], commercial_use=lic.get("commercial_use"),
        weights_file=d["files"]["weights"],
        onnx_graph_file=d["files"].get("onnx_graph"),
        applicability=Applicability(
            tuple(app["spacing_mm"]) if "spacing_mm" in app else None,
            tuple(app["min_field_of_view_mm"]) if "min_field_of_view_mm" in app else None,
            app.get("on_mismatch", "warn"),
        ),
        variants=dict(d.get("variants", {})),
        raw=document,
        lateral_pairs=pairs,
        lateral_mirrored_component=bool(lateralization.get("mirrored_component", False)),
        lateral_position_prior=position_prior,
    )


SIDE_CODES = {"right": "24028007", "left": "7771000"}  # SNOMED CT Right, Left


def _check_lateral_pairs(pairs: tuple[tuple[int, int], ...], labels: list[Label], source: str) -> None:
    """Each pair names two labels of the card, no label is in two pairs, and a label whose
    terminology names a side is on that side of its pair (catches swapped pairs)."""
    by_value = {label.value: label for label in labels}
    seen: set[int] = set()
    for pair in pairs:
        for value, side in zip(pair, ("right", "left")):
            if value not in by_value:
                raise BundleError(f"{source}: lateralization pair {list(pair)} names label value {value}, which the "
                                  "card does not have", "pair values of the card's labels: [right, left]")
            if value in seen:
                raise BundleError(f"{source}: label value {value} is in more than one lateralization pair",
                                  "pair each left/right structure once")
            seen.add(value)
            modifier = by_value[value].terminology.modifier
            if modifier is not None and modifier.value in SIDE_CODES.values() and modifier.value != SIDE_CODES[side]:
                raise BundleError(f"{source}: lateralization pair {list(pair)}: label {by_value[value].name!r} is not "
                                  f"a {side} structure by its terminology", "give each pair as [right, left]")


def _lateral_position_prior(lateralization: dict, pairs: tuple[tuple[int, int], ...],
                            source: str) -> dict[int, tuple[tuple[float, float, float], float]]:
    """``lateralization.position_prior`` by label value; it weights the mirrored-component choice,
    so it needs that rule and names only paired labels."""
    prior = lateralization.get("position_prior", {})
    if prior and not lateralization.get("mirrored_component", False):
        raise BundleError(f"{source}: lateralization.position_prior weights the mirrored-component choice, which is "
                          "off", "set lateralization.mirrored_component to true, or drop position_prior")
    paired = {value for pair in pairs for value in pair}
    parsed = {}
    for key, entry in prior.items():
        if not key.isdigit() or int(key) not in paired:
            raise BundleError(f"{source}: lateralization.position_prior names {key!r}, not a label value of a "
                              "lateralization pair", "key the prior by the paired labels' values")
        parsed[int(key)] = (tuple(float(x) for x in entry["offset_mm"]), float(entry["radius_mm"]))
    return parsed


def load_card_text(text: str, source: str) -> ModelCard:
    try:
        document: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{source} is not valid JSON: {exc}", "re-export or re-download the bundle") from None
    if not isinstance(document, dict):
        raise BundleError(f"{source} must hold a JSON object", "re-export the bundle")
    return parse_card(document, source)
