"""Mammographic view and laterality from every place a file keeps them.

Archives disagree on where they put the view. Full-field systems fill
ViewPosition; others code it in ViewCodeSequence (SNOMED CT, legacy SNOMED-RT
or DCM codes of CID 4014, "View for Mammography"); digitised film often has
neither but writes ``CC``/``MLO`` into PatientOrientation, or a description
such as ``LEFT_CC`` into SeriesDescription or the file and folder names.
Laterality likewise: ImageLaterality, Laterality, FrameLaterality in the
functional groups of enhanced objects (tomosynthesis), then the description.

Each value comes with its source, the first place (in that order) that
yields one, so a wrong view can be traced to where it was read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

#: Normalised view names (ACR MQCM abbreviations, as ViewPosition uses them).
VIEWS = frozenset({"CC", "MLO", "ML", "LM", "LMO", "XCC", "XCCL", "XCCM", "FB", "SIO", "ISO",
                   "AT", "CV"})
#: Spellings seen in descriptions and file names, mapped to the names above.
VIEW_ALIASES = {"CRANIOCAUDAL": "CC", "MEDIOLATERALOBLIQUE": "MLO", "OBLIQUE": "MLO",
                "MEDIOLATERAL": "ML", "LATEROMEDIAL": "LM", "CLEAVAGE": "CV"}
LATERALITY_WORDS = {"L": "L", "R": "R", "LEFT": "L", "RIGHT": "R", "LT": "L", "RT": "R"}

#: CID 4014 codes (SNOMED CT) -> view. Legacy SNOMED-RT codes ("R-10242") are
#: translated through pydicom's own SNOMED mapping.
SCT_VIEWS = {
    "399162004": "CC", "399368009": "MLO", "399260004": "ML", "399352003": "LM",
    "399099002": "LMO", "399196006": "FB", "399192008": "XCCL", "399101009": "XCCM",
    "399265009": "XCC", "399188001": "SIO", "441555000": "ISO", "399011000": "AT",
    "399161006": "CV",
}
DCM_VIEWS = {"111433": "ISO", "111434": "SIO"}

# Code meanings, for codes from a scheme we do not map (longest phrases first).
MEANING_VIEWS = (
    ("cranio-caudal exaggerated laterally", "XCCL"), ("cranio-caudal exaggerated medially", "XCCM"),
    ("exaggerated cranio-caudal", "XCC"), ("medio-lateral oblique", "MLO"),
    ("latero-medial oblique", "LMO"), ("medio-lateral", "ML"), ("latero-medial", "LM"),
    ("caudo-cranial", "FB"), ("cranio-caudal", "CC"), ("axillary tail", "AT"),
    ("cleavage", "CV"),
)

_TOKEN = re.compile(r"[A-Za-z]+")
# "LCC", "RMLO", "LXCCL": laterality glued to the view.
_GLUED = re.compile(r"^([LR])(" + "|".join(sorted(VIEWS, key=len, reverse=True)) + ")$")


def text_views(text: str) -> tuple[str, str]:
    """(view, laterality) named in free text ("LEFT_CC", "R MLO", "lcc"); "" when absent."""
    view = laterality = ""
    for token in (t.upper() for t in _TOKEN.findall(text or "")):
        glued = _GLUED.match(token)
        if glued and not view and not laterality:
            return glued.group(2), glued.group(1)
        if not view and (token in VIEWS or token in VIEW_ALIASES):
            view = VIEW_ALIASES.get(token, token)
        elif not laterality and token in LATERALITY_WORDS and len(token) > 1:
            laterality = LATERALITY_WORDS[token]
        elif not laterality and token in ("L", "R"):
            laterality = token
    return view, laterality


def view_of(ds: Any) -> tuple[str, str]:
    """(view, source) from ViewPosition, ViewCodeSequence, PatientOrientation, SeriesDescription."""
    position = text_views(_text(ds, "ViewPosition"))[0]
    if position:
        return position, "ViewPosition"
    coded = _coded_view(ds)
    if coded:
        return coded, "ViewCodeSequence"
    # Standard PatientOrientation is directions (A\R); digitised film puts the view there.
    orientation = _values(ds, "PatientOrientation")
    named = text_views(" ".join(orientation))[0]
    if named:
        return named, "PatientOrientation"
    described = text_views(_text(ds, "SeriesDescription"))[0]
    if described:
        return described, "SeriesDescription"
    return "", ""


def laterality_of(ds: Any) -> tuple[str, str]:
    """(L or R, source) from ImageLaterality, Laterality, FrameLaterality, SeriesDescription."""
    for keyword in ("ImageLaterality", "Laterality"):
        value = _side(_text(ds, keyword))
        if value:
            return value, keyword
    frame = _frame_laterality(ds)
    if frame:
        return frame, "FrameLaterality"
    described = text_views(_text(ds, "SeriesDescription"))[1]
    if described:
        return described, "SeriesDescription"
    return "", ""


def _side(value: str) -> str:
    value = value.strip().upper()
    return LATERALITY_WORDS.get(value, "") if value else ""


def _coded_view(ds: Any) -> str:
    for item in _sequence(ds, "ViewCodeSequence"):
        scheme = str(item.get("CodingSchemeDesignator", "") or "").strip().upper()
        value = str(item.get("CodeValue", "") or "").strip()
        if scheme == "SRT":
            value, scheme = _srt_to_sct(value), "SCT"
        view = (SCT_VIEWS.get(value) if scheme in ("SCT", "SNM3", "99SDM") else
                DCM_VIEWS.get(value) if scheme == "DCM" else None)
        if view:
            return view
        meaning = str(item.get("CodeMeaning", "") or "").lower()
        for phrase, name in MEANING_VIEWS:
            if phrase in meaning:
                return name
    return ""


def _srt_to_sct(code: str) -> str:
    from pydicom.sr._snomed_dict import mapping

    return mapping.get("SRT", {}).get(code, code)


def _frame_laterality(ds: Any) -> str:
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for group in _sequence(ds, groups)[:1]:
            for anatomy in _sequence(group, "FrameAnatomySequence")[:1]:
                side = _side(str(anatomy.get("FrameLaterality", "") or ""))
                if side:
                    return side
    return ""


def _sequence(ds: Any, keyword: str) -> list[Any]:
    try:
        value = ds.get(keyword, None)
        return list(value) if value else []
    except Exception:  # a malformed sequence is "no value", not a crash
        return []


def _values(ds: Any, keyword: str) -> list[str]:
    value = ds.get(keyword, None)
    if value is None:
        return []
    items: Iterable[Any] = value if isinstance(value, list | tuple) or hasattr(
        value, "__iter__") and not isinstance(value, str) else [value]
    return [str(v) for v in items]


def _text(ds: Any, keyword: str) -> str:
    try:
        value = ds.get(keyword, "")
    except Exception:
        return ""
    return "" if value is None else str(value).strip()
