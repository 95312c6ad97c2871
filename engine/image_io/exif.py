"""The EXIF a restored photo inherits: what describes the photo, never how the input file was laid out.

A TIFF's main IFD is its EXIF IFD0 for Pillow, so it holds the file's structure too (ImageWidth,
BitsPerSample, StripOffsets, Compression, ...); copied into a result of another size or format,
those tags would describe the wrong file. Only the tags below are kept, with the Exif and GPS
sub-IFDs (less their own size tags), and Orientation is 1 because the pixels are already upright.
"""

from __future__ import annotations

from typing import Optional

from PIL import ExifTags, Image

_BASE = ExifTags.Base

#: IFD0 tags that describe the photo: who, what, when and with what it was taken or scanned.
DESCRIPTIVE_TAGS = frozenset({
    _BASE.DocumentName, _BASE.ImageDescription, _BASE.Make, _BASE.Model, _BASE.Software,
    _BASE.DateTime, _BASE.Artist, _BASE.HostComputer, _BASE.Copyright, _BASE.Rating, _BASE.RatingPercent,
    _BASE.XPTitle, _BASE.XPComment, _BASE.XPAuthor, _BASE.XPKeywords, _BASE.XPSubject,
})
#: Sub-IFDs kept, each without the tags that describe the layout of the input file.
SUB_IFDS = {
    ExifTags.IFD.Exif: frozenset({_BASE.ExifImageWidth, _BASE.ExifImageHeight, ExifTags.IFD.Interop}),
    ExifTags.IFD.GPSInfo: frozenset(),
}


def descriptive_exif(exif: Image.Exif) -> Optional[bytes]:
    """The EXIF bytes to write with the restored photo (Orientation 1), or None when ``exif``
    holds nothing that describes the photo."""
    kept = Image.Exif()
    for tag in DESCRIPTIVE_TAGS & set(exif.keys()):
        kept[tag] = exif[tag]
    for ifd, layout_tags in SUB_IFDS.items():
        if ifd not in exif:
            continue
        try:
            values = {tag: value for tag, value in exif.get_ifd(ifd).items() if tag not in layout_tags}
        except Exception:  # a damaged sub-IFD is dropped, the photo is not
            continue
        if values:
            kept[ifd] = values
    if not len(kept):
        return None
    kept[_BASE.Orientation] = 1
    try:
        return kept.tobytes()
    except Exception:  # values Pillow cannot write back: better no EXIF than no photo
        return None
