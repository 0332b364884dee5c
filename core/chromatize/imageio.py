"""Reading and writing image files for colorization, keeping what must survive the round trip.

Reading (:func:`read_image`) returns the pixels as a numpy array that
:meth:`chromatize.pipeline.Colorizer.colorize` accepts, plus the metadata to write back:

- Bit depth: 8-bit images stay ``uint8``; 16-bit PNG and TIFF (grayscale, gray+alpha, RGB, RGBA)
  stay ``uint16`` (Pillow reduces 16-bit colour to 8 bits, so those are decoded with imagecodecs'
  libpng and tifffile, and written by this module and tifffile); float TIFF stays ``float32``
  if its values lie in [0, 1] and is refused otherwise.
- Alpha (LA, RGBA, palette transparency) is kept as the last channel.
- The ICC profile is kept; it is written to the output when its colour space fits the output
  (an RGB profile on an RGB output; a grayscale profile cannot describe colour and is dropped).
- EXIF orientation is *applied* to the pixels and the orientation tag is removed from the EXIF
  that is written back, so every viewer shows the output the same way; other EXIF tags are kept.
- Palette images become RGB(A); CMYK becomes sRGB (through its ICC profile when it has one);
  both are reported in :attr:`LoadedImage.notes`.
- Animated / multi-frame files (GIF, APNG, WebP, multi-page TIFF) are refused: chromatize
  colorizes single pictures and would otherwise silently drop frames.
- Images larger than ``max_pixels`` are refused from the header, before decoding (an explicit
  version of Pillow's decompression-bomb guard, sized for the pipeline's memory use).

Writing (:func:`write_image`) picks the format from the output's extension, writes to a
temporary file in the output directory and renames it into place, and never replaces an existing
file unless ``overwrite=True``.
"""

from __future__ import annotations

import errno
import io
import json
import os
import secrets
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

from chromatize.errors import InputImageError, OutputError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "READABLE_EXTENSIONS",
    "WRITABLE_EXTENSIONS",
    "LoadedImage",
    "default_output_extension",
    "output_format",
    "read_image",
    "write_image",
]

#: Largest image (width x height) read by default. Measured peak RSS of `chromatize colorize`
#: (eccv16, CPU): about 0.45 GB of torch and model plus ~10 bytes per pixel for 8-bit grayscale
#: and ~26 for 16-bit RGB (24 MP: 0.77 GB and 1.08 GB; 50 MP 8-bit: 0.95 GB), so 50 MP stays under
#: about 2 GB at any supported depth. Pass ``max_pixels`` (CLI: ``--max-pixels``) to change it;
#: 0 or None = no limit here (a Colorizer has its own ``max_pixels``; the CLI lifts both).
DEFAULT_MAX_PIXELS = 50_000_000

#: File extensions read when a folder is scanned (lower case, with the dot).
READABLE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".tif", ".tiff", ".webp", ".bmp", ".gif"}
)

_FORMAT_BY_EXTENSION = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
}
#: File extensions :func:`write_image` can write.
WRITABLE_EXTENSIONS = frozenset(_FORMAT_BY_EXTENSION)

_ORIENTATION_TAG = 0x0112
_EXIF_IFD_TAG = 0x8769
# TIFF tags that describe the file layout, not the picture; they must not travel as EXIF.
_TIFF_STRUCTURE_TAGS = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 280, 281, 282, 283, 284, 296,
     317, 320, 322, 323, 324, 325, 338, 339, 340, 341, 347, 530, 531, 532, 700, 33723, 34377,
     34675}
)
# ASCII tags of the first IFD that tifffile can write back as plain TIFF tags.
_TIFF_ASCII_TAGS = (270, 271, 272, 306, 315, 33432)
_IMAGE_DESCRIPTION_TAG = 270


@dataclass
class LoadedImage:
    """An image file decoded for colorization, with the metadata to write back."""

    path: Path
    #: (H, W), (H, W, 2) gray+alpha, (H, W, 3) RGB or (H, W, 4) RGBA; uint8, uint16 or float32.
    pixels: np.ndarray
    #: Pillow's name of the file format ("PNG", "JPEG", "TIFF", ...).
    format: str
    #: The embedded ICC profile, or None.
    icc_profile: bytes | None = None
    #: EXIF block (Pillow's ``Exif.tobytes()``), orientation removed (already applied), or None.
    exif: bytes | None = None
    #: Resolution in dots per inch, if the file has one.
    dpi: tuple[float, float] | None = None
    #: What was changed on the way in (converted modes, applied orientation), for the user.
    notes: list[str] = field(default_factory=list)

    @property
    def has_alpha(self) -> bool:
        return self.pixels.ndim == 3 and self.pixels.shape[2] in (2, 4)


# ----------------------------------------------------------------------------------- reading


def read_image(path: str | os.PathLike[str], *,
               max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode an image file into an array the colorizer accepts, plus metadata to keep.

    Raises :class:`~chromatize.errors.InputImageError` (naming the file and what to do) for
    missing, empty, truncated, unreadable, animated, too large or unsupported images.
    """
    path = Path(path)
    _check_file(path)
    limit = max_pixels or None
    notes: list[str] = []
    with warnings.catch_warnings():
        # Our own pixel limit (checked below from the header) replaces Pillow's warning; its hard
        # error (twice its limit) still applies and is turned into a clear message.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im = _open(path)
        if im is None:  # a TIFF Pillow cannot open
            return _read_tiff_with_tifffile(path, limit, notes, None)
        with im:
            pixels, icc, exif = _decode(im, path, limit, notes)
            dpi = _dpi(im)
    orientation = _orientation(exif)
    if orientation != 1:
        pixels = _apply_orientation(pixels, orientation)
        notes.append(f"applied EXIF orientation {orientation} (the output is stored upright)")
    exif_bytes = _exif_to_keep(exif, im.format) if exif is not None else None
    return LoadedImage(path=path, pixels=np.ascontiguousarray(pixels), format=im.format or "",
                       icc_profile=icc, exif=exif_bytes, dpi=dpi, notes=notes)


def _check_file(path: Path) -> None:
    """Refuse what is not a non-empty file, naming it."""
    name = str(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputImageError(f"{name}: no such file") from None
    except OSError as exc:
        raise InputImageError(f"{name}: cannot be read ({exc.strerror})") from None
    if path.is_dir():
        raise InputImageError(f"{name} is a folder; pass image files, or folders to the CLI")
    if size == 0:
        raise InputImageError(f"{name} is empty (0 bytes); it is not an image. "
                              "Re-export or re-download it.")


def _open(path: Path) -> Image.Image | None:
    """Pillow's lazy image, or None for a TIFF only tifffile can read."""
    name = str(path)
    try:
        return Image.open(path)
    except UnidentifiedImageError:
        if _is_tiff(path):
            return None
        raise InputImageError(
            f"{name} is not an image chromatize can read (not PNG, JPEG, TIFF, WebP, BMP or "
            "GIF, or its header is damaged). Check the file, or convert it to PNG."
        ) from None
    except Image.DecompressionBombError as exc:
        raise InputImageError(f"{name}: {exc}. Downscale the image first.") from None
    except OSError as exc:
        raise InputImageError(f"{name}: cannot be read ({exc})") from None


def _decode(im: Image.Image, path: Path, limit: int | None, notes: list[str]
            ) -> tuple[np.ndarray, bytes | None, Image.Exif | None]:
    """Pixels, ICC profile and EXIF of an opened single-frame image within ``limit``."""
    name = str(path)
    _check_size(name, im.size, limit)
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        kind = "pages" if im.format == "TIFF" else "frames"
        raise InputImageError(
            f"{name} has {frames} {kind} (animated or multi-page {im.format}); chromatize "
            "colorizes single pictures. Save the frame you want as its own PNG file."
        )
    icc = im.info.get("icc_profile") or None
    if im.format == "PNG" and _png_is_16bit_color(path):
        pixels = _read_png16(path)
    elif im.format == "TIFF" and _tiff_needs_tifffile(im):
        loaded = _read_tiff_with_tifffile(path, limit, notes, icc)
        pixels, icc = loaded.pixels, loaded.icc_profile
    else:
        try:
            im.load()
        except Image.DecompressionBombError as exc:
            raise InputImageError(f"{name}: {exc}. Downscale the image first.") from None
        except (OSError, SyntaxError, ValueError, struct.error, EOFError) as exc:
            raise InputImageError(
                f"{name} is damaged or truncated ({exc}); it cannot be decoded. "
                "Re-export or re-download it."
            ) from None
        pixels, icc = _pillow_pixels(im, name, icc, notes)
    # Read after decoding: Pillow turns some formats (TIFF) upright while loading them and then
    # drops the tag, so what is left here is what still needs applying.
    return pixels, icc, _read_exif(im, name, notes)


def _check_size(name: str, size: tuple[int, int], limit: int | None) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise InputImageError(f"{name} has no pixels ({width}x{height})")
    if limit is not None and width * height > limit:
        raise InputImageError(
            f"{name} is {width}x{height} = {width * height / 1e6:.1f} megapixels, more than the "
            f"limit of {limit / 1e6:g} megapixels that keeps memory use bounded (about "
            f"{_memory_gb(width * height):.1f} GB would be needed). Downscale or crop it, or raise "
            "the limit («max_pixels», 0 = no limit) if this machine has the memory."
        )


def _memory_gb(pixels: int) -> float:
    return 0.45 + pixels * 26 / 1e9


def _is_tiff(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in (b"II*\x00", b"MM\x00*")


def _png_is_16bit_color(path: Path) -> bool:
    """True for 16-bit PNGs other than plain grayscale (Pillow would reduce them to 8 bits)."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[12:16] != b"IHDR":
        return False
    bit_depth, color_type = head[24], head[25]
    return bit_depth == 16 and color_type != 0


def _tiff_needs_tifffile(im: Image.Image) -> bool:
    tags = getattr(im, "tag_v2", {})
    bits = tags.get(258, (8,))
    bits = bits if isinstance(bits, tuple) else (bits,)
    sample_format = tags.get(339, (1,))
    sample_format = sample_format if isinstance(sample_format, tuple) else (sample_format,)
    samples = int(tags.get(277, 1))
    return (max(bits) > 8 and samples > 1) or 3 in sample_format


def _read_png16(path: Path) -> np.ndarray:
    """16-bit PNG pixels at full depth (libpng through imagecodecs; Pillow keeps only 8 bits)."""
    import imagecodecs

    try:
        pixels = imagecodecs.png_decode(path.read_bytes())
    except (imagecodecs.PngError, OSError, ValueError) as exc:
        raise InputImageError(
            f"{path} is a damaged 16-bit PNG ({exc}). Re-export or re-download it."
        ) from None
    return np.asarray(pixels, dtype=np.uint16)


def _read_tiff_with_tifffile(path: Path, limit: int | None, notes: list[str],
                             icc: bytes | None) -> LoadedImage:
    import tifffile

    name = str(path)
    try:
        with tifffile.TiffFile(path) as tif:
            if len(tif.series) > 1 or len(tif.pages) > 1:
                raise InputImageError(
                    f"{name} has {len(tif.pages)} pages (multi-page TIFF); chromatize colorizes "
                    "single pictures. Save the page you want as its own file."
                )
            page = tif.pages.first
            _check_size(name, (int(page.imagewidth), int(page.imagelength)), limit)
            photometric = int(page.photometric)
            if photometric not in (1, 2):  # MINISBLACK, RGB
                raise InputImageError(
                    f"{name}: TIFF colour model {page.photometric.name} is not supported at "
                    f"{page.bitspersample} bits; save it as grayscale or RGB."
                )
            pixels = page.asarray()
            if page.planarconfig == 2 and pixels.ndim == 3:  # SEPARATE: (S, H, W)
                pixels = np.moveaxis(pixels, 0, -1)
            tag = page.tags.get(34675)
            if tag is not None and icc is None:
                icc = bytes(tag.value)
    except InputImageError:
        raise
    except Exception as exc:  # tifffile raises many types for damaged or exotic files
        raise InputImageError(f"{name} is a TIFF that cannot be decoded ({exc}). "
                              "Re-export it as an 8- or 16-bit grayscale or RGB TIFF.") from None
    pixels = _normalise_sample_types(pixels, name)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim == 3 and pixels.shape[2] not in (2, 3, 4):
        raise InputImageError(f"{name} has {pixels.shape[2]} channels; chromatize reads "
                              "grayscale, gray+alpha, RGB and RGBA images")
    return LoadedImage(path=path, pixels=pixels, format="TIFF", icc_profile=icc, notes=notes)


def _normalise_sample_types(pixels: np.ndarray, name: str) -> np.ndarray:
    if pixels.dtype in (np.uint8, np.uint16):
        return pixels.astype(pixels.dtype.newbyteorder("="), copy=False)
    if pixels.dtype.kind == "f":
        return _checked_float(pixels.astype(np.float32), name)
    raise InputImageError(
        f"{name} stores {pixels.dtype} samples; chromatize reads 8- and 16-bit unsigned integer "
        "and float images. Save it as 16-bit."
    )


def _checked_float(pixels: np.ndarray, name: str) -> np.ndarray:
    if not np.isfinite(pixels).all():
        raise InputImageError(f"{name} is a float image with NaN or infinite values; "
                              "replace them, or save the image as 16-bit")
    low, high = float(pixels.min()), float(pixels.max())
    if low < 0.0 or high > 1.0:
        raise InputImageError(
            f"{name} is a float image with values from {low:g} to {high:g}; chromatize expects "
            "float images in [0, 1]. Rescale it to [0, 1] or save it as 16-bit."
        )
    return pixels


def _pillow_pixels(im: Image.Image, name: str, icc: bytes | None,
                   notes: list[str]) -> tuple[np.ndarray, bytes | None]:
    """Pixels of a loaded Pillow image as a colorizer-ready array, and the ICC profile to keep."""
    mode = im.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(im), icc
    if mode == "1":
        return np.asarray(im.convert("L")), icc
    if mode in ("La", "RGBa", "RGBX"):
        target = {"La": "LA", "RGBa": "RGBA", "RGBX": "RGB"}[mode]
        return np.asarray(im.convert(target)), icc
    if mode in ("P", "PA"):
        target = "RGBA" if mode == "PA" or "transparency" in im.info else "RGB"
        notes.append(f"palette image converted to {target}")
        return np.asarray(im.convert(target)), icc
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16), icc
    if mode == "I":
        if im.format == "PNG":  # 16-bit grayscale PNG in some Pillow versions
            return np.asarray(im).astype(np.uint16), icc
        raise InputImageError(f"{name} is a 32-bit integer image; chromatize reads 8- and 16-bit "
                              "and float images. Save it as 16-bit PNG or TIFF.")
    if mode == "F":
        return _checked_float(np.asarray(im, dtype=np.float32), name), icc
    if mode == "CMYK":
        return _cmyk_to_rgb(im, icc, notes)
    if mode in ("YCbCr", "HSV"):
        notes.append(f"{mode} image converted to RGB")
        return np.asarray(im.convert("RGB")), icc
    raise InputImageError(f"{name} uses pixel mode {mode!r}, which chromatize does not "
                          "read; convert it to grayscale or RGB first.")


def _cmyk_to_rgb(im: Image.Image, icc: bytes | None,
                 notes: list[str]) -> tuple[np.ndarray, bytes | None]:
    if icc is not None and _icc_color_space(icc) == "CMYK":
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            rgb = ImageCms.profileToProfile(im, source, ImageCms.createProfile("sRGB"),
                                            outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
        else:
            assert rgb is not None
            notes.append("CMYK image converted to sRGB with its embedded ICC profile")
            return np.asarray(rgb), None
    notes.append("CMYK image converted to RGB without a colour profile (none usable embedded); "
                 "colours may differ slightly from a colour-managed conversion")
    return np.asarray(im.convert("RGB")), None


def _read_exif(im: Image.Image, name: str, notes: list[str]) -> Image.Exif | None:
    try:
        exif = im.getexif()
    except Exception:  # Pillow raises assorted errors for malformed EXIF blocks
        notes.append("EXIF data is malformed and was not copied")
        return None
    return exif if len(exif) else None


def _orientation(exif: Image.Exif | None) -> int:
    if exif is None:
        return 1
    try:
        value = int(exif.get(_ORIENTATION_TAG, 1) or 1)
    except (TypeError, ValueError):
        return 1
    return value if value in range(1, 9) else 1


def _exif_to_keep(exif: Image.Exif, fmt: str | None) -> bytes | None:
    """The EXIF block to write to the output: orientation removed (it was applied)."""
    if _ORIENTATION_TAG in exif:
        del exif[_ORIENTATION_TAG]
    if fmt == "TIFF":  # Pillow's EXIF of a TIFF is its first IFD, layout tags included
        for tag in list(exif):
            if tag in _TIFF_STRUCTURE_TAGS:
                del exif[tag]
    if _describes_layout(exif.get(_IMAGE_DESCRIPTION_TAG)):
        del exif[_IMAGE_DESCRIPTION_TAG]
    if not len(exif):
        return None
    try:
        return exif.tobytes()
    except Exception:  # a tag Pillow cannot re-encode
        return None


def _describes_layout(description: object) -> bool:
    """Whether an ImageDescription is machine-written metadata about the input's layout (shape,
    channels, axes) rather than text about the picture: tifffile's shape JSON (``{"shape": [H,
    W]}``, older ``shape=(H, W)``), ImageJ's header (``ImageJ=1.x``) and OME-XML. Copied into the
    RGB output it would lie about the output's shape, so it is dropped; plain text is kept."""
    if isinstance(description, bytes):
        description = description.decode("latin-1")
    if not isinstance(description, str):
        return False
    text = description.strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            return False
        return isinstance(parsed, dict) and "shape" in parsed
    if text.startswith(("shape=(", "ImageJ=")):
        return True
    head = text[:4096]
    return text.startswith("<") and ("<OME" in head or "openmicroscopy.org/Schemas/OME" in head)


def _dpi(im: Image.Image) -> tuple[float, float] | None:
    dpi = im.info.get("dpi")
    if not dpi:
        return None
    try:
        x, y = float(dpi[0]), float(dpi[1])
    except (TypeError, ValueError, IndexError):
        return None
    return (x, y) if x > 0 and y > 0 else None


_ORIENT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: np.swapaxes(a, 0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1),
    8: lambda a: np.rot90(a, 1),
}


def _apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Turn pixels stored with EXIF ``orientation`` (1-8) upright, like Pillow's exif_transpose."""
    transform = _ORIENT.get(orientation)
    return pixels if transform is None else np.ascontiguousarray(transform(pixels))


# ----------------------------------------------------------------------------------- writing


def output_format(path: str | os.PathLike[str]) -> str:
    """Pillow format name for an output path, from its extension (OutputError if unknown)."""
    suffix = Path(path).suffix.lower()
    try:
        return _FORMAT_BY_EXTENSION[suffix]
    except KeyError:
        raise OutputError(
            f"cannot tell which format to write for {path}: use one of "
            f"{', '.join(sorted(WRITABLE_EXTENSIONS))}"
        ) from None


def default_output_extension(input_path: str | os.PathLike[str]) -> str:
    """The input's own extension when chromatize can write that format, else ``.png``."""
    suffix = Path(input_path).suffix
    return suffix if suffix.lower() in WRITABLE_EXTENSIONS else ".png"


def write_image(path: str | os.PathLike[str], pixels: np.ndarray, *,
                icc_profile: bytes | None = None, exif: bytes | None = None,
                dpi: tuple[float, float] | None = None, overwrite: bool = False) -> list[str]:
    """Write ``pixels`` to ``path`` atomically, in the format its extension names.

    ``pixels``: (H, W), (H, W, 2), (H, W, 3) or (H, W, 4); uint8, uint16 or float in [0, 1].
    16-bit stays 16-bit in PNG and TIFF, float stays float32 in TIFF; a format that cannot hold
    the depth or alpha gets the closest it can, and the returned notes say what was reduced.
    Raises OutputError if ``path`` exists (unless ``overwrite``) or cannot be written.
    """
    path = Path(path)
    fmt = output_format(path)
    parent = path.parent
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists; not replacing it (allow «overwrite=True» to "
                          "replace it, or choose another output name)")
    if path.is_dir():
        raise OutputError(f"{path} is a folder, not an output file name")
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {parent} does not exist")
    notes: list[str] = []
    pixels, writer = _prepare(fmt, np.asarray(pixels), notes)
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    icc = _icc_for(icc_profile, channels, notes)

    tmp = parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        handle = open(tmp, "xb")  # "x": never reuses an existing name; closed below
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc} (folder {parent}). "
                          "Choose a folder you can write to.") from None
    try:
        with handle as f:
            writer(f, pixels, fmt, icc, exif, dpi, notes)
            f.flush()
            os.fsync(f.fileno())
        _move_into_place(tmp, path, overwrite)
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError, SystemError, struct.error, zlib.error) as exc:
        # the encoder refused the data (size limits of the format, unsupported layout)
        raise OutputError(f"cannot encode {path} as {fmt}: {exc}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return notes


def _move_into_place(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:  # a hard link fails if the name was taken meanwhile: never replaces a file
        os.link(tmp, path)
    except FileExistsError:
        raise OutputError(f"{path} already exists; not replacing it (allow «overwrite=True» to "
                          "replace it)") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if path.exists():  # file system without hard links
            raise OutputError(f"{path} already exists; not replacing it") from None
        os.replace(tmp, path)


_Writer = Callable[[BinaryIO, np.ndarray, str, "bytes | None", "bytes | None",
                    "tuple[float, float] | None", list[str]], None]


def _prepare(fmt: str, pixels: np.ndarray, notes: list[str]) -> tuple[np.ndarray, _Writer]:
    """Fit the array to what ``fmt`` stores and choose the encoder."""
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (2, 3, 4)):
        raise OutputError(f"cannot write an array of shape {pixels.shape} as an image")
    if pixels.dtype.kind == "f":
        pixels = np.clip(np.nan_to_num(pixels.astype(np.float32)), 0.0, 1.0)
        if fmt == "TIFF":
            return pixels, _write_tifffile
        notes.append(f"{fmt} cannot store float samples: written as "
                     f"{'16' if fmt == 'PNG' else '8'}-bit (use .tif to keep float)")
        scale = 65535.0 if fmt == "PNG" else 255.0
        dtype = np.uint16 if fmt == "PNG" else np.uint8
        pixels = np.round(pixels * scale).astype(dtype)
    if pixels.dtype == np.uint16:
        if fmt == "PNG":
            return pixels, _write_png16
        if fmt == "TIFF":
            return pixels, _write_pillow if pixels.ndim == 2 else _write_tifffile
        notes.append(f"{fmt} stores 8 bits per channel: the 16-bit result was reduced to "
                     "8 bits (write .png or .tif to keep 16 bits)")
        pixels = ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if pixels.dtype != np.uint8:
        raise OutputError(f"cannot write {pixels.dtype} pixels; use uint8, uint16 or float")
    has_alpha = pixels.ndim == 3 and pixels.shape[2] in (2, 4)
    if has_alpha and fmt in ("JPEG",):
        notes.append(f"{fmt} has no alpha channel: transparency was dropped "
                     "(write .png, .tif or .webp to keep it)")
        pixels = pixels[:, :, :-1] if pixels.shape[2] == 4 else pixels[:, :, 0]
    if fmt in ("WEBP", "BMP") and pixels.ndim == 3 and pixels.shape[2] == 2:
        pixels = np.concatenate([np.repeat(pixels[:, :, :1], 3, axis=2), pixels[:, :, 1:]], 2)
    return np.ascontiguousarray(pixels), _write_pillow


def _icc_color_space(icc: bytes) -> str:
    return icc[16:20].decode("latin-1").strip() if len(icc) >= 128 else ""


def _icc_for(icc: bytes | None, channels: int, notes: list[str]) -> bytes | None:
    if not icc:
        return None
    wanted = "GRAY" if channels <= 2 else "RGB"
    space = _icc_color_space(icc)
    if space == wanted:
        return icc
    notes.append(f"the input's {space or 'unreadable'} ICC profile does not describe a "
                 f"{'grayscale' if wanted == 'GRAY' else 'colour'} image and was not embedded "
                 "(the output is plain sRGB)")
    return None


def _write_pillow(f: BinaryIO, pixels: np.ndarray, fmt: str, icc: bytes | None,
                  exif: bytes | None, dpi: tuple[float, float] | None, notes: list[str]) -> None:
    im = _gray16(pixels) if pixels.dtype == np.uint16 else Image.fromarray(pixels)
    options: dict[str, Any] = {}
    if icc:
        options["icc_profile"] = icc
    if exif:
        options["exif"] = exif
    if dpi:
        options["dpi"] = dpi
    if fmt == "JPEG":
        options.update(quality=95)
    elif fmt == "WEBP":
        options.update(quality=95, method=4)
    elif fmt == "TIFF":
        options.update(compression="tiff_deflate")
    elif fmt == "PNG":
        options.update(compress_level=6)
    elif fmt == "BMP":
        options.pop("exif", None)
        options.pop("icc_profile", None)
    im.save(f, format=fmt, **options)


def _gray16(pixels: np.ndarray) -> Image.Image:
    im = Image.new("I;16", (pixels.shape[1], pixels.shape[0]))
    im.frombytes(pixels.astype("<u2").tobytes(), "raw", "I;16")
    return im


def _write_png16(f: BinaryIO, pixels: np.ndarray, fmt: str, icc: bytes | None,
                 exif: bytes | None, dpi: tuple[float, float] | None, notes: list[str]) -> None:
    """16-bit PNG (Pillow cannot write 16-bit colour): libpng through imagecodecs encodes the
    pixels; the metadata chunks it does not write (pHYs, iCCP, eXIf) go in right after IHDR."""
    import imagecodecs

    encoded = imagecodecs.png_encode(np.ascontiguousarray(pixels, dtype=np.uint16), level=6)
    chunks: list[tuple[bytes, bytes]] = []
    if dpi:
        per_metre = (round(dpi[0] / 0.0254), round(dpi[1] / 0.0254))
        chunks.append((b"pHYs", struct.pack(">IIB", *per_metre, 1)))
    if icc:
        chunks.append((b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc, 9)))
    if exif:
        chunks.append((b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    after_ihdr = 8 + 4 + 4 + 13 + 4  # signature, then IHDR's length, type, data and CRC
    f.write(encoded[:after_ihdr])
    for kind, data in chunks:
        f.write(struct.pack(">I", len(data)) + kind + data)
        f.write(struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)) & 0xFFFFFFFF))
    f.write(encoded[after_ihdr:])


def _write_tifffile(f: BinaryIO, pixels: np.ndarray, fmt: str, icc: bytes | None,
                    exif: bytes | None, dpi: tuple[float, float] | None, notes: list[str]) -> None:
    import tifffile

    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    extratags: list[tuple[int, str, int, Any, bool]] = []
    software = "chromatize"
    if exif:
        kept = Image.Exif()
        kept.load(exif)
        software = str(kept.get(305) or software)
        for tag in _TIFF_ASCII_TAGS:
            value = kept.get(tag)
            if isinstance(value, str) and value:
                extratags.append((tag, "s", 0, value, True))
        if kept.get_ifd(_EXIF_IFD_TAG):
            notes.append("the EXIF camera settings (Exif sub-IFD) are not written to 16-bit "
                         "or float TIFF; the main tags (camera, date, author) are")
    tifffile.imwrite(
        f, pixels,
        photometric="rgb" if channels >= 3 else "minisblack",
        extrasamples=["unassalpha"] if channels in (2, 4) else None,
        compression="zlib",
        predictor=pixels.dtype != np.float32,
        iccprofile=icc,
        resolution=(dpi[0], dpi[1]) if dpi else None,
        resolutionunit="inch" if dpi else None,
        metadata=None,
        software=software,
        extratags=extratags,
    )
