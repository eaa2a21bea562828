"""Photos the bot re-posts (wanted notices): checked, and stripped of every piece of metadata.

A phone photo carries EXIF — GPS position, time, camera serial — that must not
travel to a hundred group rooms. Re-encoding the pixels alone (Pillow) drops
EXIF, XMP, ICC comments and thumbnails; the orientation is applied first, so
the picture still stands the right way up.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

ACCEPTED = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
MAX_PIXELS = 40_000_000


class NotAnImage(ValueError):
    """The bytes are not a picture this bot accepts."""


@dataclass(frozen=True)
class CleanImage:
    data: bytes
    mimetype: str
    width: int
    height: int

    @property
    def extension(self) -> str:
        return {"image/jpeg": "jpg", "image/png": "png"}[self.mimetype]


def strip_metadata(data: bytes) -> CleanImage:
    """Re-encode ``data`` without any metadata (JPEG stays JPEG; everything else → PNG)."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(io.BytesIO(data)) as source:
            kind = source.format or ""
            if kind not in ACCEPTED:
                raise NotAnImage(f"unsupported image type {kind or 'unknown'}")
            source.load()
            upright = ImageOps.exif_transpose(source) or source
            if kind == "JPEG":
                pixels = upright.convert("RGB")
                out_format, mimetype = "JPEG", "image/jpeg"
            else:
                pixels = upright.convert("RGBA" if "A" in upright.getbands() else "RGB")
                out_format, mimetype = "PNG", "image/png"
            clean = Image.new(pixels.mode, pixels.size)
            clean.paste(pixels)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        raise NotAnImage(str(err) or "not an image") from None
    buffer = io.BytesIO()
    if out_format == "JPEG":
        clean.save(buffer, format="JPEG", quality=90, optimize=True)
    else:
        clean.save(buffer, format="PNG", optimize=True)
    return CleanImage(buffer.getvalue(), mimetype, clean.width, clean.height)


def has_metadata(data: bytes) -> bool:
    """True if the image carries EXIF (or XMP/comments): used by tests and checks."""
    with Image.open(io.BytesIO(data)) as image:
        if image.getexif():
            return True
        return any(key in image.info for key in ("exif", "xmp", "XML:com.adobe.xmp", "comment"))
