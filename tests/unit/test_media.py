"""Photos lose every piece of metadata before the bot posts them."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bot.domain.media import NotAnImage, has_metadata, strip_metadata


def jpeg_with_gps(orientation: int = 1) -> bytes:
    image = Image.new("RGB", (40, 20), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    exif[0x010F] = "PhoneMaker"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (31.0, 13.0, 30.0)  # GPSLatitudeRef, GPSLatitude
    gps[3], gps[4] = "E", (121.0, 28.0, 10.0)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    return buffer.getvalue()


def test_gps_and_camera_data_are_removed_and_the_picture_kept() -> None:
    original = jpeg_with_gps()
    assert has_metadata(original)
    clean = strip_metadata(original)
    assert clean.mimetype == "image/jpeg" and (clean.width, clean.height) == (40, 20)
    assert not has_metadata(clean.data)
    assert b"PhoneMaker" not in clean.data


def test_the_orientation_is_applied_before_it_is_dropped() -> None:
    clean = strip_metadata(jpeg_with_gps(orientation=6))  # rotated 90°
    assert (clean.width, clean.height) == (20, 40)


def test_png_stays_a_clean_png() -> None:
    buffer = io.BytesIO()
    Image.new("RGBA", (5, 5)).save(buffer, format="PNG")
    clean = strip_metadata(buffer.getvalue())
    assert clean.mimetype == "image/png" and not has_metadata(clean.data)


@pytest.mark.parametrize("data", [b"", b"%PDF-1.4 not a picture", b"\xff\xd8\xff garbage"])
def test_non_images_are_refused(data: bytes) -> None:
    with pytest.raises(NotAnImage):
        strip_metadata(data)
