"""Slicer terminology strings for segments, from the model card's SNOMED CT codes.

Slicer stores a segment's meaning in its ``TerminologyEntry`` tag: exactly seven ``~``-separated
parts, ``<context>~<category>~<type>~<type modifier>~<region context>~<region>~<region modifier>``,
each code ``scheme^value^meaning`` and ``^^`` when empty.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .bundle.card import Code, Label, ModelCard, Terminology

EMPTY_CODE = "^^"
MEDSEGAI_CONTEXT = "Segmentation category and type - MedSegAI"


def _code(code: Code | None) -> str:
    return str(code) if code else EMPTY_CODE


def terminology_entry(term: Terminology) -> str:
    """The 7-part ``TerminologyEntry`` string."""
    return "~".join([
        term.context, _code(term.category), _code(term.type), _code(term.modifier),
        term.region_context, _code(term.region), _code(term.region_modifier),
    ])


@dataclass(frozen=True)
class ParsedEntry:
    context: str
    category: Code | None
    type: Code | None
    modifier: Code | None


def parse_terminology_entry(entry: str) -> ParsedEntry:
    parts = entry.split("~")
    if len(parts) != 7:
        raise ValueError(f"a TerminologyEntry has 7 '~'-separated parts, got {len(parts)}: {entry!r}")

    def code(text: str) -> Code | None:
        fields = text.split("^")
        return Code(*fields) if len(fields) == 3 and any(fields) else None

    return ParsedEntry(parts[0], code(parts[1]), code(parts[2]), code(parts[3]))


def same_concept(a: str, b: str) -> bool:
    """Whether two entries name the same category, type and modifier (contexts may differ)."""
    pa, pb = parse_terminology_entry(a), parse_terminology_entry(b)

    def key(p: ParsedEntry):
        return tuple((c.scheme, c.value) if c else None for c in (p.category, p.type, p.modifier))

    return key(pa) == key(pb)


def terminology_json(cards: list[ModelCard]) -> dict:
    """A Slicer ``.term.json`` context holding every category/type/modifier the cards use with the
    MedSegAI context, so Slicer's terminology selector can show codes that are not in its lists."""
    categories: dict[tuple, dict] = {}
    for card in cards:
        for label in card.labels:
            if label.terminology.context != MEDSEGAI_CONTEXT:
                continue
            t = label.terminology
            cat = categories.setdefault((t.category.scheme, t.category.value), {
                **_json_code(t.category), "showAnatomy": False, "Type": []})
            types = cat["Type"]
            entry = next((x for x in types if x["CodeValue"] == t.type.value and x["CodingSchemeDesignator"] == t.type.scheme), None)
            if entry is None:
                entry = {**_json_code(t.type), "recommendedDisplayRGBValue": list(label.color)}
                types.append(entry)
            if t.modifier is not None:
                mods = entry.setdefault("Modifier", [])
                if not any(m["CodeValue"] == t.modifier.value for m in mods):
                    mods.append({**_json_code(t.modifier), "recommendedDisplayRGBValue": list(label.color)})
    return {
        "@schema": "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/segment-context-schema.json#",
        "SegmentationCodes": {"Category": list(categories.values())},
        "SegmentationCategoryTypeContextName": MEDSEGAI_CONTEXT,
    }


def _json_code(code: Code) -> dict:
    return {"CodeMeaning": code.meaning, "CodingSchemeDesignator": code.scheme, "CodeValue": code.value}


def label_summary(label: Label) -> dict:
    """The label as written next to NIfTI label maps (``labels.json``)."""
    return {"value": label.value, "name": label.name, "color": list(label.color),
            "terminology": terminology_entry(label.terminology)}


def labels_document(card: ModelCard, labels: list[Label]) -> str:
    return json.dumps({"model": card.id, "version": card.version, "labels": [label_summary(x) for x in labels]}, indent=2)
