"""TCGA barcodes: 12-character patient ids, sample types and the one-sample-per-patient rule."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

log = logging.getLogger(__name__)

_BARCODE = re.compile(r"^TCGA-([A-Z0-9]{2})-([A-Z0-9]{4})(?:-(\d{2})([A-Z]?))?", re.IGNORECASE)
TUMOUR_TYPES = range(1, 10)
"""TCGA sample type codes of tumour samples (01 primary solid tumour … 09); 10-19 are normals, 20+ controls."""


def patient_id(barcode: str) -> str | None:
    """The 12-character patient id `TCGA-XX-XXXX` (upper case) a TCGA barcode or file name starts with.

    None when `barcode` does not start with a TCGA barcode.
    """
    match = _BARCODE.match(str(barcode).strip())
    return None if match is None else f"TCGA-{match.group(1)}-{match.group(2)}".upper()


def tissue_source_site(case_id: str) -> str | None:
    """The two-character tissue source site (`XX` of `TCGA-XX-XXXX`), None for a non-TCGA id."""
    match = _BARCODE.match(str(case_id).strip())
    return None if match is None else match.group(1).upper()


def sample_type(barcode: str) -> int | None:
    """The sample type code (01 = primary solid tumour, 11 = solid tissue normal …); None if absent."""
    match = _BARCODE.match(str(barcode).strip())
    return None if match is None or match.group(3) is None else int(match.group(3))


def pick_samples(barcodes: Iterable[str], *, source: str = "table") -> dict[str, str]:
    """Choose one sample per patient: patient id → the barcode of the chosen sample.

    Rule: normal (10-19) and control (20+) samples are never chosen; among a patient's tumour samples
    (01-09, or patient-level 12-character ids) the lowest type code wins (01 primary solid tumour before
    02 recurrent, 03 primary blood, 06 metastatic), then the first barcode in sort order (vial A before
    B, portion 01 before 02). Barcodes that are not TCGA barcodes are kept as their own patient id.
    Patients left out or samples discarded are logged (`source` names the file).
    """
    candidates: dict[str, list[tuple[int, str]]] = {}
    normals = 0
    for barcode in barcodes:
        barcode = str(barcode).strip()
        kind = sample_type(barcode)
        if kind is not None and kind not in TUMOUR_TYPES:
            normals += 1
            continue
        case = patient_id(barcode) or barcode
        candidates.setdefault(case, []).append((0 if kind is None else kind, barcode))
    chosen = {case: min(samples)[1] for case, samples in candidates.items()}
    extra = sum(len(samples) - 1 for samples in candidates.values())
    if normals or extra:
        log.warning(
            "%s: %d normal/control samples ignored; %d further tumour samples of patients with "
            "several ignored (primary tumour -01 preferred)",
            source,
            normals,
            extra,
        )
    return chosen
