"""chromatize.imageio on real files made here: depth, alpha, ICC, EXIF, odd inputs, safe writes."""

from __future__ import annotations

import io
import os
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms, ImageOps

from chromatize.errors import InputImageError, OutputError
from chromatize.imageio import (
    default_output_extension,
    read_image,
    write_image,
)

SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
RNG = np.random.default_rng(7)


def gray_icc() -> bytes:
    """A profile whose header declares a grayscale colour space (what the reader checks)."""
    data = bytearray(SRGB_ICC)
    data[16:20] = b"GRAY"
    return bytes(data)


def exif_with(orientation: int | None = None, make: str = "TestCam") -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = make
    if orientation is not None:
        exif[0x0112] = orientation
    return exif


def random_u16(*shape: int) -> np.ndarray:
    return RNG.integers(0, 65536, size=shape, dtype=np.uint16)


def random_u8(*shape: int) -> np.ndarray:
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


def png_header(path: Path) -> tuple[int, int]:
    """(bit depth, colour type) from a PNG's IHDR chunk."""
    head = path.read_bytes()[:26]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return head[24], head[25]


def files_in(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


# ------------------------------------------------------------------------ bit depth and alpha


def test_16bit_grayscale_png_reads_as_uint16(tmp_path: Path) -> None:
    gray = random_u16(20, 30)
    path = tmp_path / "g16.png"
    Image.fromarray(gray).save(path)  # Pillow writes mode I;16 as a 16-bit grayscale PNG
    assert Image.open(path).mode == "I;16"
    loaded = read_image(path)
    assert loaded.pixels.dtype == np.uint16
    np.testing.assert_array_equal(loaded.pixels, gray)


@pytest.mark.parametrize("planes", [2, 3, 4])
def test_16bit_colour_png_keeps_every_bit(tmp_path: Path, planes: int) -> None:
    pixels = random_u16(12, 17, planes)
    path = tmp_path / "c16.png"
    path.write_bytes(imagecodecs.png_encode(pixels))  # libpng, independent of chromatize
    loaded = read_image(path)
    assert loaded.pixels.dtype == np.uint16
    np.testing.assert_array_equal(loaded.pixels, pixels)


@pytest.mark.parametrize("planes,width", [(1, 11), (2, 11), (3, 11), (4, 11), (3, 100_000)])
def test_16bit_png_written_as_16bit_with_icc_and_exif(tmp_path: Path, planes: int,
                                                      width: int) -> None:
    # width 100000: a long row, several IDAT chunks from libpng
    pixels = random_u16(9, width, planes)
    rgb_profile = planes >= 3
    path = tmp_path / "out.png"
    profile = SRGB_ICC if rgb_profile else gray_icc()
    notes = write_image(path, pixels.squeeze(), icc_profile=profile,
                        exif=exif_with().tobytes(), dpi=(300.0, 300.0))
    assert notes == []
    assert png_header(path) == (16, {1: 0, 2: 4, 3: 2, 4: 6}[planes])
    decoded = imagecodecs.png_decode(path.read_bytes())  # libpng checks chunk CRCs and zlib
    np.testing.assert_array_equal(decoded.reshape(pixels.shape), pixels)
    with Image.open(path) as im:
        assert im.info["icc_profile"] == profile
        assert im.getexif()[0x010F] == "TestCam"
        assert im.info["dpi"] == pytest.approx((300, 300), abs=0.01)


@pytest.mark.parametrize("planes", [2, 3, 4])
def test_16bit_tiff_round_trip_with_icc(tmp_path: Path, planes: int) -> None:
    pixels = random_u16(10, 14, planes)
    source = tmp_path / "in.tif"
    tifffile.imwrite(source, pixels, photometric="rgb" if planes >= 3 else "minisblack",
                     extrasamples=["unassalpha"] if planes in (2, 4) else None,
                     compression="lzw", iccprofile=SRGB_ICC if planes >= 3 else None)
    loaded = read_image(source)
    assert loaded.pixels.dtype == np.uint16
    np.testing.assert_array_equal(loaded.pixels, pixels)
    target = tmp_path / "out.tif"
    write_image(target, loaded.pixels, icc_profile=loaded.icc_profile)
    with tifffile.TiffFile(target) as tif:
        page = tif.pages.first
        np.testing.assert_array_equal(page.asarray(), pixels)
        if planes >= 3:
            assert bytes(page.tags[34675].value) == SRGB_ICC


def test_float_tiff_in_unit_range_is_read_and_written_as_float(tmp_path: Path) -> None:
    values = RNG.random((8, 9), dtype=np.float32)
    source = tmp_path / "f.tif"
    Image.fromarray(values, mode="F").save(source)
    loaded = read_image(source)
    assert loaded.pixels.dtype == np.float32
    np.testing.assert_array_equal(loaded.pixels, values)
    rgb = np.stack([values] * 3, axis=-1)
    write_image(tmp_path / "out.tif", rgb)
    back = tifffile.imread(tmp_path / "out.tif")
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, rgb)


def test_float_tiff_outside_unit_range_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hdr.tif"
    Image.fromarray(np.full((4, 4), 3.5, np.float32), mode="F").save(path)
    with pytest.raises(InputImageError, match=r"hdr\.tif.*values from 3\.5 to 3\.5.*\[0, 1\]"):
        read_image(path)


@pytest.mark.parametrize("mode,channels", [("LA", 2), ("RGBA", 4)])
def test_alpha_is_kept(tmp_path: Path, mode: str, channels: int) -> None:
    pixels = random_u8(6, 7, channels)
    source = tmp_path / "a.png"
    Image.fromarray(pixels, mode=mode).save(source)
    loaded = read_image(source)
    np.testing.assert_array_equal(loaded.pixels, pixels)
    assert loaded.has_alpha
    rgba = np.dstack([random_u8(6, 7, 3), pixels[:, :, -1]])
    write_image(tmp_path / "out.png", rgba)
    with Image.open(tmp_path / "out.png") as im:
        assert im.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(im)[:, :, 3], pixels[:, :, -1])


# ---------------------------------------------------------------------------- converted modes


def test_palette_png_becomes_rgb_with_a_note(tmp_path: Path) -> None:
    rgb = random_u8(8, 8, 3)
    path = tmp_path / "p.png"
    Image.fromarray(rgb).quantize(16).save(path)
    expected = np.asarray(Image.open(path).convert("RGB"))
    loaded = read_image(path)
    np.testing.assert_array_equal(loaded.pixels, expected)
    assert any("palette" in note for note in loaded.notes)


def test_palette_png_with_transparency_becomes_rgba(tmp_path: Path) -> None:
    im = Image.fromarray(random_u8(8, 8, 3)).quantize(8)
    path = tmp_path / "pt.png"
    im.save(path, transparency=0)
    loaded = read_image(path)
    assert loaded.pixels.shape == (8, 8, 4)
    assert (loaded.pixels[:, :, 3] == 0).any() or (np.asarray(im) != 0).all()


def test_cmyk_jpeg_becomes_rgb_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 8), (0, 0, 0, 0)).save(path, quality=100)
    loaded = read_image(path)
    assert loaded.pixels.shape == (8, 16, 3) and loaded.pixels.dtype == np.uint8
    assert loaded.pixels.min() >= 250  # no ink = white
    assert any("CMYK" in note for note in loaded.notes)
    assert loaded.icc_profile is None  # a CMYK profile must not be attached to RGB output


def test_grayscale_icc_profile_is_not_put_on_colour_output(tmp_path: Path) -> None:
    source = tmp_path / "g.png"
    Image.fromarray(random_u8(5, 5)).save(source, icc_profile=gray_icc())
    loaded = read_image(source)
    assert loaded.icc_profile == gray_icc()
    notes = write_image(tmp_path / "out.png", random_u8(5, 5, 3), icc_profile=loaded.icc_profile)
    assert any("GRAY ICC profile" in note for note in notes)
    with Image.open(tmp_path / "out.png") as im:
        assert "icc_profile" not in im.info


# -------------------------------------------------------------------------------- metadata


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow_and_removed(tmp_path: Path,
                                                             orientation: int) -> None:
    pixels = random_u8(5, 8, 3)
    path = tmp_path / "o.png"  # PNG: lossless, so pixels can be compared exactly
    Image.fromarray(pixels).save(path, exif=exif_with(orientation))
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    loaded = read_image(path)
    np.testing.assert_array_equal(loaded.pixels, expected)
    kept = Image.Exif()
    kept.load(loaded.exif)
    assert 0x0112 not in kept
    assert kept[0x010F] == "TestCam"


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_orientation_of_a_16bit_colour_tiff_is_applied(tmp_path: Path, orientation: int) -> None:
    pixels = random_u16(4, 6, 3)
    path = tmp_path / "o16.tif"
    tifffile.imwrite(path, pixels, photometric="rgb", extratags=[(274, "H", 1, orientation)])
    eight_bit = tmp_path / "o8.tif"  # the same picture at 8 bits, turned upright by Pillow
    tifffile.imwrite(eight_bit, (pixels >> 8).astype(np.uint8), photometric="rgb",
                     extratags=[(274, "H", 1, orientation)])
    with Image.open(eight_bit) as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    loaded = read_image(path)
    assert loaded.pixels.dtype == np.uint16
    np.testing.assert_array_equal((loaded.pixels >> 8).astype(np.uint8), expected)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif", ".webp"])
def test_icc_exif_and_dpi_survive_an_8bit_round_trip(tmp_path: Path, suffix: str) -> None:
    source = tmp_path / f"in{suffix}"
    Image.fromarray(random_u8(12, 10, 3)).save(source, icc_profile=SRGB_ICC,
                                               exif=exif_with(6), dpi=(240, 240))
    loaded = read_image(source)
    assert loaded.pixels.shape == (10, 12, 3)  # orientation 6 turned the 10-wide image upright
    assert loaded.icc_profile == SRGB_ICC
    target = tmp_path / f"out{suffix}"
    write_image(target, loaded.pixels, icc_profile=loaded.icc_profile, exif=loaded.exif,
                dpi=loaded.dpi)
    with Image.open(target) as im:
        assert im.size == (12, 10)
        assert im.info["icc_profile"] == SRGB_ICC
        exif = im.getexif()
        assert exif[0x010F] == "TestCam"
        assert exif.get(0x0112, 1) == 1
        if suffix != ".webp":  # WebP has no resolution field
            assert im.info["dpi"] == pytest.approx((240, 240), abs=0.01)


# ---------------------------------------------------------------------------- refused inputs


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(InputImageError, match=r"empty\.png is empty \(0 bytes\)"):
        read_image(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputImageError, match=r"nothere\.png: no such file"):
        read_image(tmp_path / "nothere.png")


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = io.BytesIO()
    Image.fromarray(random_u8(64, 64, 3)).save(data, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    with pytest.raises(InputImageError, match=r"cut\.jpg is damaged or truncated.*Re-export"):
        read_image(path)


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("these are my holiday notes, not a picture\n")
    with pytest.raises(InputImageError, match=r"notes\.png is not an image chromatize can read"):
        read_image(path)


def test_animated_gif_is_refused(tmp_path: Path) -> None:
    frames = [Image.fromarray(random_u8(8, 8, 3)).convert("P") for _ in range(3)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    with pytest.raises(InputImageError, match=r"anim\.gif has 3 frames.*single pictures"):
        read_image(path)


def test_multipage_tiff_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pages.tif"
    pages = [Image.fromarray(random_u8(8, 8)) for _ in range(2)]
    pages[0].save(path, save_all=True, append_images=pages[1:])
    with pytest.raises(InputImageError, match=r"pages\.tif has 2 pages"):
        read_image(path)


def test_pixel_limit_is_checked_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("L", (10_000, 10_000)).save(path)  # 100 megapixels, compresses to ~100 KB
    assert path.stat().st_size < 1_000_000
    with pytest.raises(InputImageError, match=r"big\.png is 10000x10000 = 100\.0 megapixels"
                                              r".*\(max_pixels, 0 = no limit\)"):
        read_image(path)
    small = tmp_path / "small.png"
    Image.new("L", (20, 20)).save(small)
    with pytest.raises(InputImageError, match="more than the limit"):
        read_image(small, max_pixels=399)
    assert read_image(small, max_pixels=400).pixels.shape == (20, 20)


# ------------------------------------------------------------------------------------ writing


def test_existing_file_is_never_replaced_without_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"precious")
    with pytest.raises(OutputError, match=r"out\.png already exists.*overwrite"):
        write_image(target, random_u8(4, 4, 3))
    assert target.read_bytes() == b"precious"
    assert files_in(tmp_path) == ["out.png"]
    write_image(target, random_u8(4, 4, 3), overwrite=True)
    assert Image.open(target).size == (4, 4)
    assert files_in(tmp_path) == ["out.png"]


def test_failed_encode_leaves_no_temporary_file(tmp_path: Path) -> None:
    # JPEG cannot encode an image 70000 pixels wide: the encoder fails after the temp file exists
    with pytest.raises(OutputError, match=r"wide\.jpg"):
        write_image(tmp_path / "wide.jpg", np.zeros((1, 70_000, 3), np.uint8))
    assert files_in(tmp_path) == []


def test_unwritable_output_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a regular file, so nothing can be created below it")
    with pytest.raises(OutputError, match=r"does not exist"):
        write_image(blocker / "out.png", random_u8(4, 4, 3))
    with pytest.raises(OutputError, match=r"cannot write /proc/chromatize-test\.png"):
        write_image("/proc/chromatize-test.png", random_u8(4, 4, 3))


def test_unknown_output_extension(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"cannot tell which format.*\.png"):
        write_image(tmp_path / "out.xyz", random_u8(4, 4, 3))


def test_formats_that_cannot_hold_the_data_say_what_was_reduced(tmp_path: Path) -> None:
    notes = write_image(tmp_path / "deep.jpg", random_u16(4, 4, 3))
    assert any("reduced to 8 bits" in note for note in notes)
    notes = write_image(tmp_path / "alpha.jpg", random_u8(4, 4, 4))
    assert any("transparency was dropped" in note for note in notes)
    assert Image.open(tmp_path / "alpha.jpg").mode == "RGB"


def test_default_output_extension() -> None:
    assert default_output_extension("a/photo.JPG") == ".JPG"
    assert default_output_extension("scan.tiff") == ".tiff"
    assert default_output_extension("clip.gif") == ".png"


# ------------------------------------------------------------------ TIFF ImageDescription
HUMAN_DESCRIPTION = "Grandma's farm, summer 1952 (scan of the print)"


def _description(path: Path) -> str | None:
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages.first.tags.get(270)
        return None if tag is None else tag.value


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("kind", ["tifffile_shape_json", "tifffile_old_shape", "imagej", "ome"])
def test_tiff_description_of_the_old_layout_is_not_copied(tmp_path: Path, dtype: type,
                                                          kind: str) -> None:
    """tifffile's shape JSON, ImageJ's header and OME-XML describe a grayscale (H, W) layout;
    copied into the RGB output they would lie about its shape."""
    gray = (RNG.integers(0, 256, (12, 16)) * (257 if dtype == np.uint16 else 1)).astype(dtype)
    source = tmp_path / "in.tif"
    options = {"tifffile_shape_json": {},
               "tifffile_old_shape": {"description": "shape=(12, 16)", "metadata": None},
               "imagej": {"imagej": True},
               "ome": {"ome": True}}[kind]
    tifffile.imwrite(source, gray, **options)
    before = _description(source)
    assert before and ("shape" in before or "ImageJ=" in before or "<OME" in before)
    loaded = read_image(source)
    target = tmp_path / "out.tif"
    write_image(target, np.stack([loaded.pixels] * 3, axis=-1), exif=loaded.exif)
    with tifffile.TiffFile(target) as tif:
        assert tif.pages.first.shape == (12, 16, 3)
        assert not tif.is_imagej and not tif.is_ome
    after = _description(target)
    assert after is None or ("shape" not in after and "ImageJ" not in after), after


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tiff_plain_text_description_is_kept(tmp_path: Path, dtype: type) -> None:
    gray = (RNG.integers(0, 256, (12, 16)) * (257 if dtype == np.uint16 else 1)).astype(dtype)
    source = tmp_path / "in.tif"
    tifffile.imwrite(source, gray, description=HUMAN_DESCRIPTION, metadata=None)
    loaded = read_image(source)
    target = tmp_path / "out.tif"
    write_image(target, np.stack([loaded.pixels] * 3, axis=-1), exif=loaded.exif)
    assert _description(target) == HUMAN_DESCRIPTION


def test_layout_descriptions_are_told_from_text() -> None:
    from chromatize.imageio import _describes_layout

    for layout in ('{"shape": [480, 640]}', ' {"shape": [2, 3, 4], "axes": "ZYX"}\n',
                   "shape=(480, 640)", "ImageJ=1.54f\nimages=1\n", b"ImageJ=1.11a\n",
                   '<?xml version="1.0"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/'
                   '2016-06"></OME>'):
        assert _describes_layout(layout), layout
    for text in (HUMAN_DESCRIPTION, "{ a note in braces }", '{"title": "holiday"}', "", None, 5,
                 "<b>not OME</b>", "Shape of things to come"):
        assert not _describes_layout(text), text
