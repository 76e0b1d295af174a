"""Map slides to patients: a folder of slide files named by TCGA barcode, or a CSV of slide_id, case_id."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from memamba.errors import InputError
from memamba.genomics.barcodes import patient_id
from memamba.naming import SLIDE_EXTENSIONS

log = logging.getLogger(__name__)


def read_slide_list(spec: str | Path) -> pd.DataFrame:
    """Slides and their patients: DataFrame(case_id, slide_id), one row per slide, sorted by slide_id.

    spec: a folder, whose slide files (`SLIDE_EXTENSIONS`, not recursive) are named by their TCGA barcode
    (`TCGA-XX-XXXX-01Z-00-DX1….svs`; the patient is the first 12 characters; other files are skipped with
    a warning), or a CSV with a `slide_id` column and optionally `case_id` (else the patient comes from
    the slide id's barcode). slide_id is the file name, extension included, as in MCAT tables.
    """
    path = Path(spec)
    if path.is_dir():
        names = sorted(p.name for p in path.iterdir() if p.is_file() and p.name.lower().endswith(SLIDE_EXTENSIONS))
        cases = [patient_id(name) for name in names]
        unnamed = [name for name, case in zip(names, cases, strict=True) if case is None]
        if unnamed:
            log.warning(
                "%s: %d slide files not named by a TCGA barcode skipped (e.g. %s); list them in a "
                "slides CSV with their case_id",
                path,
                len(unnamed),
                unnamed[0],
            )
        slides = pd.DataFrame({"case_id": cases, "slide_id": names}).dropna()
        if slides.empty:
            raise InputError(
                f"{path}: no slide file named by a TCGA barcode ({', '.join(SLIDE_EXTENSIONS[:4])} …); "
                "pass the slides folder or a CSV of slide_id, case_id"
            )
        return slides.reset_index(drop=True)
    if not path.is_file():
        raise InputError(f"{path}: slides folder or CSV not found; check --slides")
    return _slides_csv(path)


def _slides_csv(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        raise InputError(f"{path}: not a readable CSV; a slides CSV has columns slide_id[, case_id]") from None
    if "slide_id" not in table.columns:
        raise InputError(f"{path}: missing column 'slide_id'; a slides CSV has columns slide_id[, case_id]")
    slide_ids = table["slide_id"].str.strip()
    given = table["case_id"].str.strip() if "case_id" in table.columns else pd.Series(None, index=table.index)
    cases = given.where(given.notna() & (given != ""), slide_ids.map(lambda s: None if pd.isna(s) else patient_id(s)))
    bad = slide_ids.isna() | cases.isna()
    if bad.any():
        line = int(bad.to_numpy().nonzero()[0][0]) + 2
        raise InputError(
            f"{path}: line {line} has no slide_id, or no case_id and a slide_id that is not a TCGA "
            f"barcode ({int(bad.sum())} rows); fill slide_id and case_id"
        )
    repeated = slide_ids.duplicated()
    if repeated.any():
        line = int(repeated.to_numpy().nonzero()[0][0]) + 2
        raise InputError(
            f"{path}: slide '{slide_ids[repeated].iloc[0]}' is listed twice (line {line}); list each slide once"
        )
    slides = pd.DataFrame({"case_id": cases, "slide_id": slide_ids})
    return slides.sort_values("slide_id", kind="stable").reset_index(drop=True)
