"""SNOMED CT terminology for data set label names (``"liver"``, ``"kidney_left"``, ``"Hippocampus_L"``).

The table, ``snomed_structures.json`` next to this module, holds about 100 common CT and MR
structures and findings: organs, vessels, bones, tissues, brain structures, tumour-type findings.
Their category, type and left/right modifier codes, meanings and recommended colours were copied
from 3D Slicer's terminology lists (3D Slicer General Anatomy, DICOM master), and each entry
records the context of the list it comes from; the spellings each entry answers to are curated.

A name is matched, never guessed:

* it is normalised: camelCase and any separators split words, case is ignored, plurals are made
  singular (``ribs``, ``vertebrae``, ``hippocampi``), British spellings become American ones
  (``tumour``, ``grey``, ``oesophagus``), word order does not matter (``lung_upper_lobe`` is
  ``upper lobe of lung``);
* ``left`` / ``right`` anywhere, and ``L`` ``R`` ``lt`` ``rt`` ``lh`` ``rh`` as the first or last
  word, give the laterality: the SNOMED CT modifier Left (7771000) or Right (24028007) where the
  list has that modifier for the structure, or a concept that includes the side (``Left atrium``);
* the result must be exactly one table entry. Names that mean several things (``hip``,
  ``ventricle``, ``cancer``), that ask for a side the list cannot express (``liver_left``) or that
  are not in the table give no match, and :func:`unmatched_reason` says why;
* one typo in a word of six letters or more is corrected when exactly one table word is that close
  (``hipocampus``); such a match has a lower confidence (:data:`TYPO_CONFIDENCE`) so that callers
  can offer it instead of applying it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

Code = tuple[str, str, str]  # (coding scheme, value, meaning)
Color = tuple[int, int, int]

TABLE_PATH = Path(__file__).with_name("snomed_structures.json")
NAME_CONFIDENCE = 1.0  # the concept's own meaning
SPELLING_CONFIDENCE = 0.95  # a spelling the table lists for it (Slicer's label, a data set's name)
TYPO_CONFIDENCE = 0.8  # after correcting one typo
MIN_TYPO_WORD = 6  # shorter words are too close to other anatomy (ileum / ilium)
SIDE_WORDS = {"left": "left", "right": "right"}
# Abbreviations are sides only at either end of a name ("Hippocampus_L", "lh_thalamus").
SIDE_ABBREVIATIONS = {"l": "left", "lt": "left", "lh": "left", "r": "right", "rt": "right", "rh": "right"}
AMERICAN = {"grey": "gray", "tumour": "tumor", "oesophagus": "esophagus", "oedema": "edema",
            "haemorrhage": "hemorrhage"}
STOP_WORDS = {"of", "the"}
NOT_PLURAL = {"pancreas", "atlas", "biceps", "triceps", "quadriceps"}  # their final s is not a plural's
CONFLICTING_SIDES = "left and right"
NOT_IN_TABLE = "not in the look-up table"


@dataclass(frozen=True)
class Entry:
    """One concept of the table."""

    names: tuple[str, ...]
    context: str
    category: Code
    type: Code
    color: Color | None
    sides: dict[str, tuple[Code, Color | None]]  # "left" / "right" -> (modifier, its colour)


@dataclass(frozen=True)
class Match:
    """The terminology found for a label name, how it was found and how sure that is."""

    label: str
    context: str
    category: Code
    type: Code
    modifier: Code | None
    color: Color | None  # None where the list recommends none
    confidence: float
    explanation: str

    def terminology(self) -> dict:
        """The card's ``terminology`` object.

        Example:
            >>> lookup("kidney_left").terminology()["modifier"]
            ['SCT', '7771000', 'Left']
        """
        term = {"context": self.context, "category": list(self.category), "type": list(self.type)}
        if self.modifier:
            term["modifier"] = list(self.modifier)
        return term

    def describe(self) -> str:
        """Codes and meanings in a line.

        Example:
            >>> lookup("Hippocampus_L").describe()
            'SCT 5366008 Hippocampus, modifier SCT 7771000 Left'
        """
        text = f"{self.type[0]} {self.type[1]} {self.type[2]}"
        return text + (f", modifier {self.modifier[0]} {self.modifier[1]} {self.modifier[2]}" if self.modifier else "")


Key = tuple[tuple[str, ...], Optional[str]]  # (sorted words, side); Optional: runs on Python 3.9


def _singular(word: str) -> str:
    """Example: ``vertebrae`` -> ``vertebra``, ``hippocampi`` -> ``hippocampus``, ``pancreas`` stays."""
    if word in NOT_PLURAL:
        return word
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "ches", "shes", "xes")):
        return word[:-2]
    if len(word) > 4 and word.endswith("ae"):
        return word[:-1]
    if len(word) > 4 and word.endswith("i"):
        return word[:-1] + "us"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def normalize(name: str) -> Key:
    """The words of a name (singular, American spelling, sorted) and its side.

    The side is ``"left"``, ``"right"``, None, or :data:`CONFLICTING_SIDES`.

    Example:
        >>> normalize("Left-Lateral-Ventricles")
        (('lateral', 'ventricle'), 'left')
        >>> normalize("lung_upper_lobe_R")
        (('lobe', 'lung', 'upper'), 'right')
        >>> normalize("CerebralGreyMatter")
        (('cerebral', 'gray', 'matter'), None)
    """
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name)  # camelCase -> camel Case
    words = [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]
    sides = set()
    kept = []
    for i, word in enumerate(words):
        at_end = i in (0, len(words) - 1)
        side = SIDE_WORDS.get(word) or (SIDE_ABBREVIATIONS.get(word) if at_end else None)
        if side:
            sides.add(side)
        elif word not in STOP_WORDS:
            singular = _singular(word)
            kept.append(AMERICAN.get(singular, singular))
    side = sides.pop() if len(sides) == 1 else (CONFLICTING_SIDES if sides else None)
    return tuple(sorted(kept)), side


def _code(values: list) -> Code:
    return (str(values[0]), str(values[1]), str(values[2]))


def _color(values: list | None) -> Color | None:
    return (int(values[0]), int(values[1]), int(values[2])) if values else None


def _entry(d: dict) -> Entry:
    sides = {side: (_code(s["modifier"]), _color(s["color"])) for side, s in d.get("laterality", {}).items()}
    return Entry(tuple(d["names"]), d["context"], _code(d["category"]), _code(d["type"]), _color(d["color"]), sides)


@lru_cache(maxsize=1)
def table() -> tuple[tuple[Entry, ...], dict[tuple[str, ...], str]]:
    """The table's entries, and the ambiguous names (normalised words -> what they may mean)."""
    data = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    ambiguous = {normalize(name)[0]: meaning for name, meaning in data["ambiguous"].items()}
    return tuple(_entry(d) for d in data["structures"]), ambiguous


@lru_cache(maxsize=1)
def _index() -> dict[Key, list[tuple[Entry, str]]]:
    """Normalised spelling -> the entries it names, with the spelling as the table writes it."""
    index: dict[Key, list[tuple[Entry, str]]] = {}
    for entry in table()[0]:
        for name in entry.names:
            hits = index.setdefault(normalize(name), [])
            if all(e is not entry for e, _ in hits):
                hits.append((entry, name))
    return index


@lru_cache(maxsize=1)
def _vocabulary() -> frozenset[str]:
    return frozenset(word for words, _ in _index() for word in words)


def _one_edit_apart(a: str, b: str) -> bool:
    """One substitution, insertion, deletion or swap of neighbours.

    Example:
        >>> _one_edit_apart("hipocampus", "hippocampus"), _one_edit_apart("cerebral", "cerebellar")
        (True, False)
    """
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
                                  and a[diff[1]] == b[diff[0]])
    short, long_ = sorted((a, b), key=len)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def _corrected(words: tuple[str, ...]) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
    """The words with each unknown long word replaced by the only table word one edit away."""
    vocabulary = _vocabulary()
    fixed, changes = [], []
    for word in words:
        near = [v for v in vocabulary if _one_edit_apart(word, v)] if (
            word not in vocabulary and len(word) >= MIN_TYPO_WORD) else []
        if len(near) == 1:
            changes.append((word, near[0]))
        fixed.append(near[0] if len(near) == 1 else word)
    return tuple(sorted(fixed)), changes


def _resolve(label: str, words: tuple[str, ...], side: str | None, confidence: float,
             how: str) -> Match | str:
    """The one entry for normalised words and side, or why there is none."""
    if side == CONFLICTING_SIDES:
        return "it names both left and right"
    if not words:
        return "no structure is named"
    index = _index()
    # a concept that includes the side ("left atrium"), or the structure without a side
    found = [(entry, name, None) for entry, name in index.get((words, side), [])]
    if side:  # the structure with the list's Left / Right modifier
        found += [(entry, name, side) for entry, name in index.get((words, None), []) if side in entry.sides]
    if len(found) > 1:
        return "ambiguous: " + " or ".join(f"{e.type[2]} ({e.type[1]})" for e, _, _ in found)
    if not found:
        ambiguous = table()[1]  # after the table: "left ventricle" is the heart's, "ventricle" is ambiguous
        if words in ambiguous:
            return f"ambiguous: {ambiguous[words]}"
        without_side = index.get((words, None), [])
        if side and without_side:
            return f"{without_side[0][0].type[2]} has no {side} modifier in {without_side[0][0].context}"
        return NOT_IN_TABLE
    entry, name, modifier_side = found[0]
    modifier, color = entry.sides[modifier_side] if modifier_side else (None, entry.color)
    color = color or entry.color  # a modifier without a colour of its own keeps the type's
    exact = name.lower() == entry.type[2].lower()
    confidence = min(confidence, NAME_CONFIDENCE if exact else SPELLING_CONFIDENCE)
    why = how or ("the concept's name" if exact else f"the table's spelling '{name}'")
    if modifier_side:
        why += f", {modifier_side} from the name"
    if color is None:
        why += "; the list recommends no colour"
    return Match(label, entry.context, entry.category, entry.type, modifier, color, confidence,
                 f"{why} ({entry.context})")


def _find(name: str) -> Match | str:
    words, side = normalize(name)
    found = _resolve(name, words, side, NAME_CONFIDENCE, "")
    if isinstance(found, Match) or found != NOT_IN_TABLE:
        return found
    fixed, changes = _corrected(words)
    if not changes:
        return found
    how = "after correcting " + ", ".join(f"'{a}' to '{b}'" for a, b in changes)
    retry = _resolve(name, fixed, side, TYPO_CONFIDENCE, how)
    return retry if isinstance(retry, Match) else found


def lookup(name: str) -> Match | None:
    """The SNOMED CT terminology of a data set label name, or None (see :func:`unmatched_reason`).

    Example:
        >>> m = lookup("Hippocampus_L")
        >>> m.type, m.modifier, m.confidence
        (('SCT', '5366008', 'Hippocampus'), ('SCT', '7771000', 'Left'), 1.0)
        >>> lookup("pallidum_right").type[2], lookup("pallidum_right").color
        ('Globus pallidus', (48, 129, 126))
        >>> lookup("hip_left") is None, lookup("sphere") is None
        (True, True)
    """
    found = _find(name)
    return found if isinstance(found, Match) else None


def unmatched_reason(name: str) -> str | None:
    """Why :func:`lookup` finds nothing for a name (None when it finds something).

    Example:
        >>> unmatched_reason("hip_left")
        'ambiguous: hip bone, hip joint or hip region'
        >>> unmatched_reason("liver_left")
        'Liver has no left modifier in Segmentation category and type - 3D Slicer General Anatomy list'
    """
    found = _find(name)
    return None if isinstance(found, Match) else found
