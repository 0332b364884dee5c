"""The real ``chromatize`` console script, run as a subprocess on real files made here.

The model is ``eccv16`` with randomly initialised weights saved by the test (``--weights``), so
these tests depend neither on the trained ``mobile`` model nor on the network.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

from chromatize.batch import MANIFEST_NAME
from chromatize.cli import colorize as colorize_cli
from chromatize.errors import ChromatizeError

SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
RNG = np.random.default_rng(11)
SCRIPT = Path(sys.executable).with_name("chromatize")


def chromatize_command() -> list[str]:
    """The installed console script when it sits beside this Python, else ``python -m``."""
    return [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "chromatize"]


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    cache = tmp_path_factory.mktemp("cache")
    env = dict(os.environ)
    env.update(CHROMATIZE_CACHE_DIR=str(cache), OMP_NUM_THREADS="2", PYTHONUNBUFFERED="1")
    return env


def run_cli(env: dict[str, str], *args: str | Path, cwd: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*chromatize_command(), *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, check=False)


def model_args(weights: Path) -> list[str]:
    return ["--model", "eccv16", "--weights", str(weights)]


def failure_line(stderr: str, name: str) -> str:
    """The summary line reporting input file ``name``."""
    lines = [line for line in stderr.splitlines()
             if line.startswith("  ") and Path(line.strip().split(": ", 1)[0]).name == name]
    assert lines, f"no failure reported for {name}:\n{stderr}"
    return lines[0]


def listing(out_dir: Path, recursive: bool = False) -> list[str]:
    """What a run wrote into ``out_dir`` besides its manifest (which must be there)."""
    assert (out_dir / MANIFEST_NAME).is_file()
    found = out_dir.rglob("*") if recursive else out_dir.iterdir()
    return sorted(str(p.relative_to(out_dir)) for p in found if p.name != MANIFEST_NAME)


def lightness(rgb: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(rgb)[..., 0]


# ----------------------------------------------------------------------------- bad inputs


def make_bad_inputs(folder: Path) -> None:
    """Write every awkward input of the core issue into ``folder``."""
    (folder / "empty.png").write_bytes(b"")
    jpeg = folder / "whole.jpg"
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(jpeg)
    data = jpeg.read_bytes()
    jpeg.unlink()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "notes.png").write_text("not a picture at all\n")
    Image.new("L", (1, 1), 128).save(folder / "one_pixel.png")
    tall = np.linspace(0, 255, 10_000).astype(np.uint8)[:, None]
    Image.fromarray(tall).save(folder / "one_by_10000.png")
    Image.new("CMYK", (48, 32), (10, 10, 10, 60)).save(folder / "cmyk.jpg")
    Image.fromarray(RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)).quantize(16).save(
        folder / "palette.png")
    Image.fromarray(np.linspace(0, 65535, 40 * 30).astype(np.uint16).reshape(30, 40)).save(
        folder / "gray16.png")
    Image.fromarray(np.linspace(0, 1, 24 * 20, dtype=np.float32).reshape(20, 24), mode="F").save(
        folder / "float.tif")
    frames = [Image.new("L", (16, 16), v).convert("P") for v in (0, 128, 255)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=50)
    Image.new("L", (10_000, 10_000), 90).save(folder / "huge.png")  # 100 MP in ~100 KB


def test_every_bad_input_gets_a_clear_message_and_the_rest_are_colorized(
        tmp_path: Path, cli_env: dict[str, str], eccv16_weights: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    make_bad_inputs(inputs)
    out = tmp_path / "out"
    result = run_cli(cli_env, "colorize", inputs, "--out-dir", out, *model_args(eccv16_weights))
    assert result.returncode == 1, result.stderr
    err = result.stderr
    assert "Traceback" not in err
    assert "5 of 11 inputs failed (6 colorized)" in err
    assert "empty (0 bytes)" in failure_line(err, "empty.png")
    assert "damaged or truncated" in failure_line(err, "truncated.jpg")
    assert "not an image chromatize can read" in failure_line(err, "notes.png")
    for name in ("empty.png", "truncated.jpg", "notes.png", "animated.gif", "huge.png"):
        assert failure_line(err, name).count(name) == 1  # each failure names its file once
    assert "has 3 frames (animated" in failure_line(err, "animated.gif")
    huge = failure_line(err, "huge.png")
    assert "10000x10000 = 100.0 megapixels" in huge and "--max-pixels" in huge
    assert "CMYK image converted" in err
    assert "palette image converted to RGB" in err

    def read(name: str) -> np.ndarray:
        with Image.open(out / name) as im:
            return np.asarray(im)

    assert read("one_pixel.png").shape == (1, 1, 3)
    tall = read("one_by_10000.png")
    assert tall.shape == (10_000, 1, 3)
    source = np.asarray(Image.open(inputs / "one_by_10000.png"))
    gray_l = lightness(np.repeat(source[..., None], 3, axis=2))
    assert np.abs(lightness(tall) - gray_l).mean() < 0.5
    assert read("cmyk.jpg").shape == (32, 48, 3)
    assert read("palette.png").shape == (32, 32, 3)
    header = (out / "gray16.png").read_bytes()[:26]
    assert (header[24], header[25]) == (16, 2)  # IHDR: 16-bit, colour type RGB
    deep = imagecodecs.png_decode((out / "gray16.png").read_bytes())
    assert deep.dtype == np.uint16 and deep.shape == (30, 40, 3)
    assert deep.max() > 60_000  # real 16-bit range, not 8-bit values
    floats = tifffile.imread(out / "float.tif")
    assert floats.dtype == np.float32 and floats.shape == (20, 24, 3)
    assert listing(out) == [
        "cmyk.jpg", "float.tif", "gray16.png", "one_by_10000.png", "one_pixel.png", "palette.png"]


def test_unwritable_output_folder(tmp_path: Path, cli_env: dict[str, str],
                                  eccv16_weights: Path) -> None:
    photo = tmp_path / "photo.png"
    Image.new("L", (32, 32), 100).save(photo)
    blocker = tmp_path / "a-file"
    blocker.write_text("a regular file: nothing can be created below it (even as root)")
    result = run_cli(cli_env, "colorize", photo, "--out-dir", blocker / "out",
                     *model_args(eccv16_weights))
    assert result.returncode == 1
    assert "chromatize: error: cannot create the output folder" in result.stderr
    assert "Traceback" not in result.stderr

    # Checked before the model is loaded: ECCV16 without weights would be an error otherwise.
    result = run_cli(cli_env, "colorize", photo, "-o", "/proc/chromatize-test.png",
                     "--model", "eccv16")
    assert result.returncode == 1
    line = failure_line(result.stderr, "photo.png")
    assert "cannot write /proc/chromatize-test.png" in line and "not writable" in line
    assert "error:" not in result.stderr and "Traceback" not in result.stderr


def test_unwritable_folders_fail_before_anything_is_colorized(tmp_path: Path) -> None:
    from chromatize import batch

    ok = tmp_path / "ok"
    ok.mkdir()
    jobs = [batch.Job(Path("a.png"), ok / "new" / "a.png"),  # created later: fine
            batch.Job(Path("b.png"), Path("/proc/b.png")),
            batch.Job(Path("c.png"), tmp_path / "a-file" / "c.png")]
    (tmp_path / "a-file").write_text("not a folder")
    work = batch.Plan(list(jobs))
    batch.prepare_outputs(work, None)
    assert work.jobs == jobs[:1]
    assert [f.path.name for f in work.failures] == ["b.png", "c.png"]
    assert "the folder /proc is not writable" in work.failures[0].message
    assert "a-file is not a folder" in work.failures[1].message
    assert sorted(p.name for p in ok.iterdir()) == []  # the test file is removed


# ---------------------------------------------------------------------- what must survive


def test_depth_alpha_icc_exif_survive_and_nothing_is_left_behind(
        tmp_path: Path, cli_env: dict[str, str], eccv16_weights: Path) -> None:
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    rgba = np.dstack([np.repeat(RNG.integers(0, 256, (24, 40, 1), dtype=np.uint8), 3, axis=2),
                      RNG.integers(0, 256, (24, 40), dtype=np.uint8)])
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    exif[0x0112] = 6  # stored sideways: the output must be upright, tag removed
    Image.fromarray(rgba, mode="RGBA").save(inputs / "alpha.png", icc_profile=SRGB_ICC,
                                            exif=exif)
    deep = RNG.integers(0, 65536, (20, 28, 3), dtype=np.uint16)
    tifffile.imwrite(inputs / "sub" / "deep.tif", deep, photometric="rgb", compression="zlib",
                     iccprofile=SRGB_ICC)
    Image.new("L", (16, 16), 30).save(inputs / ".hidden.png")
    out = tmp_path / "out"
    result = run_cli(cli_env, "colorize", inputs, "-r", "--out-dir", out,
                     *model_args(eccv16_weights))
    assert result.returncode == 0, result.stderr
    assert listing(out, recursive=True) == [
        "alpha.png", "sub", "sub/deep.tif"]  # no temp files, hidden input skipped
    with Image.open(out / "alpha.png") as im:
        assert im.mode == "RGBA" and im.size == (24, 40)
        assert im.info["icc_profile"] == SRGB_ICC
        assert im.getexif()[0x010F] == "TestCam"
        assert im.getexif().get(0x0112, 1) == 1
        upright_alpha = np.rot90(rgba[:, :, 3], -1)
        np.testing.assert_array_equal(np.asarray(im)[:, :, 3], upright_alpha)
    with tifffile.TiffFile(out / "sub" / "deep.tif") as tif:
        page = tif.pages.first
        result_deep = page.asarray()
        assert result_deep.dtype == np.uint16 and result_deep.shape == deep.shape
        assert bytes(page.tags[34675].value) == SRGB_ICC
    assert np.abs(lightness(result_deep / 65535.0) - lightness(deep / 65535.0)).mean() < 0.5


def test_existing_outputs_and_inputs_are_not_overwritten(
        tmp_path: Path, cli_env: dict[str, str], eccv16_weights: Path) -> None:
    photo = tmp_path / "photo.png"
    Image.new("L", (32, 32), 100).save(photo)
    original = photo.read_bytes()
    existing = tmp_path / "photo_color.png"
    existing.write_bytes(b"earlier result")
    result = run_cli(cli_env, "colorize", photo, *model_args(eccv16_weights))
    assert result.returncode == 1
    assert "already exists; not replacing it" in failure_line(result.stderr, "photo.png")
    assert existing.read_bytes() == b"earlier result"

    result = run_cli(cli_env, "colorize", photo, "--suffix", "", *model_args(eccv16_weights))
    assert result.returncode == 1
    assert "is the input itself" in failure_line(result.stderr, "photo.png")
    assert photo.read_bytes() == original

    result = run_cli(cli_env, "colorize", photo, "--overwrite", *model_args(eccv16_weights))
    assert result.returncode == 0, result.stderr
    assert f"{photo} -> {existing}" in result.stdout
    with Image.open(existing) as im:
        assert im.mode == "RGB" and im.size == (32, 32)
    assert photo.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png", "photo_color.png"]


# ------------------------------------------------------------------------ errors and usage


def test_errors_are_one_line_without_traceback(tmp_path: Path, cli_env: dict[str, str]) -> None:
    photo = tmp_path / "photo.png"
    Image.new("L", (8, 8)).save(photo)
    result = run_cli(cli_env, "colorize", photo, "--model", "eccv16", "--weights",
                     tmp_path / "missing.pth")
    assert result.returncode == 1
    assert result.stderr.startswith("chromatize: error: ")
    assert "missing.pth" in result.stderr and "Traceback" not in result.stderr

    result = run_cli(cli_env, "colorize", photo, tmp_path / "other.png", "-o", tmp_path / "x.png")
    assert result.returncode == 1
    assert "-o/--output names one output file" in result.stderr


def test_quiet_prints_only_failures(tmp_path: Path, cli_env: dict[str, str],
                                    eccv16_weights: Path) -> None:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.png", "b.png", "sub/c.png"):
        Image.new("L", (32, 32), 100).save(folder / name)
    loud = run_cli(cli_env, "colorize", folder, "--out-dir", tmp_path / "loud",
                   *model_args(eccv16_weights))
    assert loud.returncode == 0, loud.stderr
    assert "chromatize: colorized 2 images" in loud.stderr
    assert ("chromatize: note: " + f"{folder}: 1 sub-folder with images was skipped; add -r "
            "(--recursive) to include them") in loud.stderr
    quiet = run_cli(cli_env, "colorize", folder, "--out-dir", tmp_path / "quiet", "-q",
                    *model_args(eccv16_weights))
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == "" and quiet.stderr == ""
    assert listing(tmp_path / "quiet") == ["a.png", "b.png"]
    (folder / "bad.png").write_text("not an image")
    failed = run_cli(cli_env, "colorize", folder, "--out-dir", tmp_path / "failed", "-q",
                     *model_args(eccv16_weights))
    assert failed.returncode == 1 and failed.stdout == ""
    assert "not an image" in failure_line(failed.stderr, "bad.png")
    assert "note:" not in failed.stderr


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("--saturation", "abc", "expected a number >= 0, got 'abc'"),
    ("--saturation", "-1", "expected a number >= 0, got '-1'"),
    ("--temperature", "0", "expected a number > 0, got '0'"),
    ("--temperature", "nan", "expected a number > 0, got 'nan'"),
    ("--render-size", "1.5", "expected a whole number from 1 to 4096, got '1.5'"),
    ("--batch-size", "0", "expected a whole number >= 1, got '0'"),
    ("--max-pixels", "lots", "expected a whole number >= 0, got 'lots'"),
    ("--max-pixels", "-5", "expected a whole number >= 0, got '-5'"),
])
def test_bad_option_values_say_what_is_expected(option: str, value: str, expected: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from chromatize.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["colorize", "photo.png", option, value])
    assert exit_info.value.code == 2
    assert f"argument {option}: {expected}" in capsys.readouterr().err


def test_usage_version_and_python_m(cli_env: dict[str, str]) -> None:
    result = run_cli(cli_env)
    assert result.returncode == 2 and "usage: chromatize" in result.stderr
    module = subprocess.run([sys.executable, "-m", "chromatize", "--version"], env=cli_env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert module.returncode == 0 and module.stdout.startswith("chromatize ")
    result = run_cli(cli_env, "colorize", "--help")
    for option in ("--out-dir", "--suffix", "--weights", "--temperature", "--saturation",
                   "--render-size", "--upsample", "--decode", "--device", "--batch-size",
                   "--overwrite", "--allow-download", "--recursive"):
        assert option in result.stdout


def test_sample_writes_a_grayscale_photo(tmp_path: Path, cli_env: dict[str, str]) -> None:
    pytest.importorskip("skimage")
    result = run_cli(cli_env, "sample", tmp_path / "gray.png")
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "gray.png") as im:
        assert im.mode == "L" and im.size == (512, 512)
        pixels = np.asarray(im)
    assert 40 < pixels.mean() < 220 and pixels.std() > 20  # a real photo, not a flat fill
    again = run_cli(cli_env, "sample", tmp_path / "gray.png")
    assert again.returncode == 1 and "already exists" in again.stderr


# ------------------------------------------------------------------------- in-process parts


def test_cli_choices_match_the_library() -> None:
    from chromatize.bins import DECODE_METHODS
    from chromatize.cli import build_parser
    from chromatize.upsample import UPSAMPLE_METHODS

    colorize_parser = build_parser()._subparsers._group_actions[0].choices["colorize"]
    choices = {a.dest: a.choices for a in colorize_parser._actions}
    assert tuple(choices["decode"]) == DECODE_METHODS
    assert tuple(choices["upsample"]) == UPSAMPLE_METHODS


def test_plan_names_outputs_and_skips_earlier_results(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "a_color.jpg").write_bytes(b"x")  # an earlier output: not an input again
    (tmp_path / "clip.gif").write_bytes(b"x")
    (tmp_path / "readme.txt").write_bytes(b"x")
    jobs, failures = colorize_cli.plan([str(tmp_path)], output=None, out_dir=None, suffix=None,
                                       recursive=False, overwrite=False)
    assert [(j.source.name, j.target.name) for j in jobs] == [("clip.gif", "clip_color.png")]
    assert [(f.path.name, "already exists" in f.message) for f in failures] == [("a.jpg", True)]
    jobs, failures = colorize_cli.plan([str(tmp_path / "a.jpg"), str(tmp_path / "nope.png")],
                                       output=None, out_dir=str(tmp_path / "o"), suffix=None,
                                       recursive=False, overwrite=False)
    assert [j.target for j in jobs] == [tmp_path / "o" / "a.jpg"]
    assert [f.message for f in failures] == ["no such file or folder"]
    with pytest.raises(ChromatizeError, match="one output file"):
        colorize_cli.plan([str(tmp_path)], output="x.png", out_dir=None, suffix=None,
                          recursive=False, overwrite=False)


def test_plan_says_which_sub_folders_it_skips_without_recursive(tmp_path: Path) -> None:
    for name in ("top.png", "one/a.png", "two/deep/b.png", ".hidden/c.png", "out/d.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    notes: list[str] = []
    jobs, failures = colorize_cli.plan([str(tmp_path)], output=None, out_dir=str(tmp_path / "out"),
                                       suffix=None, recursive=False, overwrite=False, notes=notes)
    assert [j.source.name for j in jobs] == ["top.png"] and not failures
    assert notes == [f"{tmp_path}: 2 sub-folders with images were skipped; add -r (--recursive) "
                     "to include them"]
    notes.clear()
    colorize_cli.plan([str(tmp_path)], output=None, out_dir=str(tmp_path / "out"), suffix=None,
                      recursive=True, overwrite=False, notes=notes)
    assert notes == []
    (tmp_path / "top.png").unlink()
    jobs, failures = colorize_cli.plan([str(tmp_path)], output=None, out_dir=None, suffix=None,
                                       recursive=False, overwrite=False)
    assert not jobs
    assert [f.message for f in failures] == [
        "no images found in this folder (3 sub-folders with images were skipped; add -r "
        "(--recursive) to include them)"]
    jobs, failures = colorize_cli.plan([str(tmp_path / "empty")], output=None, out_dir=None,
                                       suffix=None, recursive=False, overwrite=False)
    assert [f.message for f in failures] == ["no images found in this folder"]


def test_sample_grayscale_has_the_lightness_of_the_colour_photo() -> None:
    pytest.importorskip("skimage")
    from chromatize.samples import sample_color, sample_grayscale

    gray = sample_grayscale("chelsea")
    colour = sample_color("chelsea")
    assert gray.dtype == np.uint8 and gray.shape == colour.shape[:2]
    gray_l = lightness(np.repeat(gray[..., None], 3, axis=2))
    assert np.abs(gray_l - lightness(colour)).max() < 0.6  # 8-bit rounding only


def test_sample_without_scikit_image_says_how_to_install_it() -> None:
    code = ("import sys; sys.modules['skimage'] = None\n"
            "from chromatize.errors import ChromatizeError\n"
            "from chromatize.samples import sample_grayscale\n"
            "try:\n    sample_grayscale()\nexcept ChromatizeError as exc:\n    print(exc)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert "pip install 'chromatize[samples]'" in result.stdout


def test_readme_main_job_with_the_default_model(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """`chromatize sample photo.png --overwrite && chromatize colorize photo.png --overwrite`, as
    in the README, run twice: the set-up line can be re-run."""
    pytest.importorskip("skimage")
    from skimage.color import rgb2lab

    for _ in range(2):
        sample = run_cli(cli_env, "sample", "photo.png", "--overwrite", cwd=tmp_path)
        assert sample.returncode == 0, sample.stderr
        result = run_cli(cli_env, "colorize", "photo.png", "--overwrite", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "photo.png -> photo_color.png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png", "photo_color.png"]
    with Image.open(tmp_path / "photo.png") as im:
        gray = np.asarray(im)
    with Image.open(tmp_path / "photo_color.png") as im:
        assert im.mode == "RGB" and im.size == (512, 512)
        lab = rgb2lab(np.asarray(im))
    assert np.abs(lab[..., 0] - lightness(np.repeat(gray[..., None], 3, axis=2))).mean() < 0.5
    assert np.hypot(lab[..., 1], lab[..., 2]).mean() > 5.0  # visibly coloured (gray: 0)


def test_mask_colorizes_only_where_it_is_white(tmp_path: Path, cli_env: dict[str, str],
                                               eccv16_weights: Path) -> None:
    photo = tmp_path / "photo.png"
    rgb = (RNG.random((48, 64, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(photo)
    mask = np.zeros((48, 64), np.uint8)
    mask[:, 32:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    result = run_cli(cli_env, "colorize", photo, "--mask", tmp_path / "mask.png",
                     *model_args(eccv16_weights))
    assert result.returncode == 0, result.stderr
    out = np.asarray(Image.open(tmp_path / "photo_color.png"))
    assert np.array_equal(out[:, :32], rgb[:, :32])  # black: the input, bit for bit
    assert not np.array_equal(out[:, 32:], rgb[:, 32:])

    Image.fromarray(mask[:20]).save(tmp_path / "small.png")
    again = run_cli(cli_env, "colorize", photo, "-o", tmp_path / "other.png", "--mask",
                    tmp_path / "small.png", *model_args(eccv16_weights))
    assert again.returncode == 1 and "does not match the image" in again.stderr
    assert not (tmp_path / "other.png").exists()


# ----------------------------------------------------------------------------- colour hints


def _hint_photo(folder: Path, name: str = "photo.png", size: tuple[int, int] = (48, 64),
                orientation: int = 1) -> Path:
    """A mid-gray photo (stored ``size`` = (H, W); L about 52, where the hint colours used here
    are in gamut), optionally with an EXIF orientation tag."""
    path = folder / name
    gray = np.full(size, 124, np.uint8)
    gray[:, ::8] = 120  # a little texture
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    Image.fromarray(gray).save(path, exif=exif.tobytes())
    return path


def _hint_json(path: Path, points: list[dict]) -> Path:
    import json

    path.write_text(json.dumps(points))
    return path


def test_hints_guide_mobile_and_eccv16_refuses_them_writing_nothing(
        tmp_path: Path, cli_env: dict[str, str], eccv16_weights: Path) -> None:
    photo = _hint_photo(tmp_path)
    hints = _hint_json(tmp_path / "hints.json", [{"x": 3, "y": 4, "color": "#2e8b57"}])
    out = tmp_path / "out.png"
    result = run_cli(cli_env, "colorize", photo, "--hints", hints, "-o", out,
                     *model_args(eccv16_weights))
    assert result.returncode == 1 and "the eccv16 model does not accept colour hints" in \
        result.stderr
    assert "Traceback" not in result.stderr and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hints.json", "photo.png"]
    result = run_cli(cli_env, "colorize", photo, "--hints", hints, "-o", out)  # mobile: v2
    assert result.returncode == 0, result.stderr
    rgb = np.asarray(Image.open(out).convert("RGB"), np.float32)[4, 3] / 255.0
    import torch

    from chromatize.color import rgb_to_lab

    ab = rgb_to_lab(torch.from_numpy(rgb)[:, None, None])[1:, 0, 0]
    want = rgb_to_lab(torch.tensor([0x2E, 0x8B, 0x57], dtype=torch.float32)[:, None, None]
                      / 255.0)[1:, 0, 0]
    assert torch.allclose(ab, want, atol=4.0), (ab, want)


def test_hint_options_that_cannot_work_are_refused_before_any_work(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _hint_photo(folder)
    hints = _hint_json(tmp_path / "hints.json", [])
    result = run_cli(cli_env, "colorize", folder, "--hints", hints)
    assert result.returncode == 1 and "--hints applies to one input file" in result.stderr
    result = run_cli(cli_env, "colorize", folder, "--hints-dir", tmp_path / "nowhere")
    assert result.returncode == 1 and "is not a folder" in result.stderr
    result = run_cli(cli_env, "colorize", folder, "--hints", hints, "--hints-dir", tmp_path)
    assert result.returncode == 2 and "not allowed with argument" in result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["photo.png"]


@pytest.fixture
def hint_model_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real ``chromatize colorize`` in this process with a tiny model that accepts hints
    (no shipped model does yet)."""
    from test_hints import HintModel

    from chromatize import batch
    from chromatize.pipeline import Colorizer

    monkeypatch.setattr(batch, "refuse_hints_unless_accepted", lambda options: None)
    monkeypatch.setattr(Colorizer, "from_options", classmethod(
        lambda cls, options, max_pixels=0: Colorizer(HintModel(), device="cpu")))


def _main(*args: str | Path) -> int:
    from chromatize.cli import main

    return main([str(a) for a in args])


def _ab_at(path: Path, x: int, y: int) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(np.asarray(Image.open(path).convert("RGB")))[y, x, 1:]


def _hex_ab(hex_colour: str) -> np.ndarray:
    from skimage.color import rgb2lab

    rgb = np.array([[list(bytes.fromhex(hex_colour[1:]))]], np.uint8)
    return rgb2lab(rgb)[0, 0, 1:]


def test_json_and_image_hints_are_obeyed(tmp_path: Path, hint_model_cli: None) -> None:
    photo = _hint_photo(tmp_path)
    green = "#2e8b57"
    hints = _hint_json(tmp_path / "hints.json", [{"x": 10, "y": 20, "color": green, "size": 5}])
    assert _main("colorize", photo, "--hints", hints, "-o", tmp_path / "a.png") == 0
    for dx, dy in ((0, 0), (2, 2), (-2, 1)):
        assert np.linalg.norm(_ab_at(tmp_path / "a.png", 10 + dx, 20 + dy) - _hex_ab(green)) < 6
    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[30:33, 50:53] = (0xC0, 0x60, 0x40, 255)
    Image.fromarray(rgba).save(tmp_path / "hints.png")
    assert _main("colorize", photo, "--hints", tmp_path / "hints.png",
                 "-o", tmp_path / "b.png") == 0
    assert np.linalg.norm(_ab_at(tmp_path / "b.png", 51, 31) - _hex_ab("#c06040")) < 6


@pytest.mark.parametrize(("hints", "message"), [
    ("small.png", "the hint image is 10x10 pixels but photo.png is 64x48"),
    ("outside.json", "lies outside the 64x48 image"),
    ("colour.json", "is not a hex colour"),
    ("broken.json", "not valid JSON"),
    ("broken.png", "broken.png"),
    ("missing.json", "no such hints file"),
])
def test_bad_hints_fail_the_file_clearly_and_write_nothing(
        tmp_path: Path, hint_model_cli: None, capsys: pytest.CaptureFixture[str], hints: str,
        message: str) -> None:
    photo = _hint_photo(tmp_path)
    Image.fromarray(np.zeros((10, 10, 4), np.uint8)).save(tmp_path / "small.png")
    _hint_json(tmp_path / "outside.json", [{"x": 64, "y": 0, "color": "#ffffff"}])
    _hint_json(tmp_path / "colour.json", [{"x": 1, "y": 1, "color": "#12345"}])
    (tmp_path / "broken.json").write_text("[{")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    assert _main("colorize", photo, "--hints", tmp_path / hints, "-o", tmp_path / "out.png") == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()


def test_hints_dir_takes_each_inputs_hints_where_present(tmp_path: Path,
                                                          hint_model_cli: None) -> None:
    folder, hints, out = tmp_path / "in", tmp_path / "hints", tmp_path / "out"
    folder.mkdir()
    hints.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        _hint_photo(folder, name)
    _hint_json(hints / "a.json", [{"x": 5, "y": 5, "color": "#2e8b57", "size": 3}])
    _hint_json(hints / "b.json", [{"x": 99, "y": 5, "color": "#2e8b57"}])  # out of bounds
    assert _main("colorize", folder, "--hints-dir", hints, "--out-dir", out) == 1
    assert listing(out) == ["a.png", "c.png"]
    assert np.linalg.norm(_ab_at(out / "a.png", 5, 5) - _hex_ab("#2e8b57")) < 6


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_hints_are_in_stored_coordinates_of_a_rotated_photo(
        tmp_path: Path, hint_model_cli: None, suffix: str) -> None:
    # stored 48 x 64 (H x W) with orientation 6: shown 64 x 48, turned 90 degrees clockwise
    photo = _hint_photo(tmp_path, "photo" + suffix, orientation=6)
    colour = "#2e8b57"
    hints = _hint_json(tmp_path / "hints.json", [{"x": 10, "y": 5, "color": colour, "size": 3}])
    out = tmp_path / "out.png"
    assert _main("colorize", photo, "--hints", hints, "-o", out) == 0
    assert Image.open(out).size == (48, 64)
    # stored (x, y) = (10, 5) is shown at (H - 1 - y, x) = (42, 10)
    assert np.linalg.norm(_ab_at(out, 42, 10) - _hex_ab(colour)) < 6
    assert np.linalg.norm(_ab_at(out, 10, 5) - _hex_ab(colour)) > 6


def test_the_executable_keeps_main_s_status_and_skips_the_last_collection() -> None:
    """``chromatize`` (the console script) runs :func:`chromatize.cli.main`, passes its exit
    status on, and freezes the garbage collector before the interpreter shuts down (a quicker
    exit: shutdown does not walk torch's object graph again)."""
    code = ("import gc, sys; from chromatize.cli import console_main; sys.argv = ['chromatize'];"
            " status = console_main(); print(status, gc.get_freeze_count() > 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "True"]  # no command: usage, status 2
    assert "usage: chromatize" in done.stderr
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "chromatize"]
    assert script.value == "chromatize.cli:console_main"
