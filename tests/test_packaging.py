"""The wheel, built for real from a copy of the source: no deprecated licence metadata, and it
ships everything the front ends need (weights, model card, napari manifest, GIMP plug-in)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# What setuptools needs to build the wheel (pyproject's package roots, readme and licence file).
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "core", "napari_plugin", "gimp_plugin")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(wheel file, pip's verbose build output). Built from a copy so the checkout gets no
    build/ or egg-info folder; without build isolation, so no index is needed (setuptools>=77
    comes with the test extra)."""
    pytest.importorskip("setuptools", minversion="77")
    root = tmp_path_factory.mktemp("wheel-build")
    source = root / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for name in SOURCES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    out = root / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
         "--no-index", "-v", "-w", str(out)],
        capture_output=True, text=True, timeout=600, check=False)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    (wheel,) = out.glob("chromatize-*.whl")
    return wheel, log


def test_build_has_no_licence_deprecation_warning(built_wheel: tuple[Path, str]) -> None:
    _wheel, log = built_wheel
    assert "Building wheel for chromatize" in log  # the verbose log really holds the backend's
    assert "SetuptoolsDeprecationWarning" not in log, log[-4000:]
    assert "project.license` as a TOML table is deprecated" not in log


def test_wheel_ships_weights_card_napari_manifest_and_gimp_plugin(
        built_wheel: tuple[Path, str]) -> None:
    wheel, _log = built_wheel
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for required in ("chromatize/shipped/mobile.safetensors", "chromatize/shipped/MODEL_CARD.md",
                     "chromatize_napari/napari.yaml"):
        assert required in names, required
    plugin_sources = sorted(
        p.relative_to(REPO_ROOT / "gimp_plugin").as_posix()
        for p in (REPO_ROOT / "gimp_plugin" / "chromatize_gimp" / "plugin").glob("*.py"))
    assert plugin_sources, "no GIMP plug-in sources found in the checkout"
    assert set(plugin_sources) <= names, set(plugin_sources) - names
    weights = REPO_ROOT / "core" / "chromatize" / "shipped" / "mobile.safetensors"
    with zipfile.ZipFile(wheel) as archive:
        assert archive.getinfo("chromatize/shipped/mobile.safetensors").file_size == \
            weights.stat().st_size


def test_wheel_metadata_has_spdx_licence_classifiers_and_urls(
        built_wheel: tuple[Path, str]) -> None:
    wheel, _log = built_wheel
    with zipfile.ZipFile(wheel) as archive:
        (metadata_name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(archive.read(metadata_name).decode("utf-8"))
        names = archive.namelist()
    assert metadata["License-Expression"] == "BSD-3-Clause"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    classifiers = metadata.get_all("Classifier")
    assert "Framework :: napari" in classifiers
    assert "Topic :: Multimedia :: Graphics" in classifiers
    assert {f"Programming Language :: Python :: 3.{minor}" for minor in range(10, 14)} <= \
        set(classifiers)
    assert not [c for c in classifiers if c.startswith("License ::")]
    urls = dict(line.split(", ", 1) for line in metadata.get_all("Project-URL"))
    assert set(urls) >= {"Homepage", "Source", "Issues", "Documentation"}
    assert metadata["Keywords"]
    with zipfile.ZipFile(wheel) as archive:  # napari finds the manifest through this entry point
        (ep_name,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
        assert "chromatize_napari:napari.yaml" in archive.read(ep_name).decode("utf-8")
