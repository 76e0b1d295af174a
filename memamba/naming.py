"""Slide identifiers: the file-name key every stage uses for a slide's outputs."""

from __future__ import annotations

SLIDE_EXTENSIONS: tuple[str, ...] = (
    ".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif", ".dcm",
)


def slide_key(slide_id: str) -> str:
    """Return `slide_id` without a known slide-file extension (case-insensitive).

    Only a whole known extension is removed, so TCGA ids with dots
    ("TCGA-2F-A9KO-01Z-00-DX1.195576CF-…") keep every character of their UUID.
    """
    lowered = slide_id.lower()
    for extension in SLIDE_EXTENSIONS:
        if lowered.endswith(extension):
            return slide_id[: -len(extension)]
    return slide_id
