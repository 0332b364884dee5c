"""``chromatize gimp install|uninstall`` and :mod:`chromatize_gimp.install` (no GIMP needed)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from worker_helpers import PLUGIN_SOURCE, WORKER_ENV

from chromatize.cli import COMMANDS_GROUP, main
from chromatize.options import options_schema
from chromatize_gimp.install import (
    CONFIG_NAME,
    GimpInstallError,
    default_plugins_dir,
    install,
    uninstall,
)

sys.path.insert(0, str(PLUGIN_SOURCE))
import chromatize_client  # noqa: E402


def test_cli_installs_gimp3_layout_and_records_this_python(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    assert main(["gimp", "install", "--plug-ins-dir", str(tmp_path)]) == 0
    folder = tmp_path / "chromatize-colorize"
    entry = folder / "chromatize-colorize.py"  # GIMP 3: folder name == file stem
    assert entry.stat().st_mode & stat.S_IXUSR
    assert entry.read_text().startswith("#!/usr/bin/env python3")
    assert "Gimp.PlugIn" in entry.read_text()
    for helper in ("chromatize_shim.py", "chromatize_flow.py", "chromatize_client.py",
                   "chromatize_shim_gimp3.py"):
        assert (folder / helper).is_file()
        assert not (folder / helper).stat().st_mode & stat.S_IXUSR
    config = json.loads((folder / CONFIG_NAME).read_text())
    python = os.path.abspath(sys.executable)
    assert config["python"] == python
    assert config["command"] == [python, "-m", "chromatize.worker"]
    assert config["gimp_version"] == "3" and config["installed_by"] == "chromatize"
    assert [m["name"] for m in config["models"]][:2] == ["mobile", "eccv16"]
    out = capsys.readouterr().out
    assert str(folder) in out and "Colors > Colorize (AI)" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chromatize-colorize"]  # no leftovers


def test_installed_config_starts_a_working_worker(tmp_path: Path) -> None:
    result = install("3", tmp_path)
    client = chromatize_client.client_from_config(
        chromatize_client.load_config(str(result.plugin_dir)))
    client.env = WORKER_ENV
    info = client.info()
    assert info["type"] == "info" and info["python"] == sys.executable
    assert "eccv16" in {m["name"] for m in info["models"]}


def test_gimp_210_variant_uses_gimpfu(tmp_path: Path) -> None:
    result = install("2.10", tmp_path)
    text = result.entry.read_text()
    assert text.startswith("#!/usr/bin/env python2") and "from gimpfu import" in text
    assert (result.plugin_dir / "chromatize_shim_gimpfu.py").is_file()
    assert not (result.plugin_dir / "chromatize_shim_gimp3.py").exists()
    assert json.loads(result.config.read_text())["gimp_version"] == "2.10"


def test_reinstall_updates_but_foreign_folders_are_protected(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = install("3", tmp_path)
    (first.plugin_dir / "stale.txt").write_text("old file")
    second = install("3", tmp_path, timeout_seconds=60)
    assert not (second.plugin_dir / "stale.txt").exists()
    assert json.loads(second.config.read_text())["timeout_seconds"] == 60

    shutil.rmtree(second.plugin_dir)
    foreign = tmp_path / "chromatize-colorize"
    foreign.mkdir()
    (foreign / "mine.py").write_text("# someone else's plug-in")
    assert main(["gimp", "install", "--plug-ins-dir", str(tmp_path)]) == 1
    assert "not installed by chromatize" in capsys.readouterr().err
    assert main(["gimp", "uninstall", "--plug-ins-dir", str(tmp_path)]) == 1
    assert (foreign / "mine.py").is_file()
    assert main(["gimp", "install", "--plug-ins-dir", str(tmp_path), "--force"]) == 0
    assert not (foreign / "mine.py").exists() and (foreign / CONFIG_NAME).is_file()


def test_uninstall_removes_only_the_plugin(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "other-plugin").mkdir()
    install("3", tmp_path)
    assert main(["gimp", "uninstall", "--plug-ins-dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other-plugin"]
    assert main(["gimp", "uninstall", "--plug-ins-dir", str(tmp_path)]) == 0
    assert "nothing to remove" in capsys.readouterr().out
    assert uninstall("3", tmp_path) is None


def test_flatpak_install_goes_through_flatpak_spawn(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    expected = tmp_path / ".var/app/org.gimp.GIMP/config/GIMP/3.0/plug-ins"
    assert default_plugins_dir("3", flatpak=True) == expected
    result = install("3", flatpak=True)
    assert result.plugin_dir == expected / "chromatize-colorize"
    config = json.loads(result.config.read_text())
    assert config["command"][:3] == ["flatpak-spawn", "--host", "--watch-bus"]
    assert config["command"][3:] == [os.path.abspath(sys.executable), "-m", "chromatize.worker"]
    assert config["python"] == os.path.abspath(sys.executable) and config["flatpak"] is True


@pytest.mark.skipif(sys.platform != "linux", reason="Linux folder conventions")
def test_default_folders_follow_gimp_conventions(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GIMP3_DIRECTORY", raising=False)
    monkeypatch.delenv("GIMP2_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert default_plugins_dir("3") == tmp_path / "cfg/GIMP/3.0/plug-ins"
    assert default_plugins_dir("2.10") == tmp_path / "cfg/GIMP/2.10/plug-ins"
    monkeypatch.setenv("GIMP3_DIRECTORY", str(tmp_path / "custom"))
    assert default_plugins_dir("3") == tmp_path / "custom/plug-ins"
    with pytest.raises(GimpInstallError, match="unknown GIMP version"):
        default_plugins_dir("2.8")


def test_a_python_without_chromatize_is_refused(tmp_path: Path) -> None:
    bare = shutil.which("python3", path="/usr/bin:/bin")
    if bare is None or os.path.realpath(bare) == os.path.realpath(sys.executable):
        pytest.skip("no separate system python3 to try")
    with pytest.raises(GimpInstallError, match="cannot run chromatize's worker"):
        install("3", tmp_path, python=bare)
    assert not (tmp_path / "chromatize-colorize").exists()


def test_config_carries_the_settings_schema_of_colorize_options(tmp_path: Path) -> None:
    config = json.loads(install("3", tmp_path).config.read_text())
    settings = config["settings"]
    schema = options_schema()
    assert set(settings) == set(schema)
    for name, entry in schema.items():
        for key in ("label", "help", "kind", "default", "minimum", "default_text"):
            assert settings[name][key] == entry[key], (name, key)
    assert settings["model"]["choices"][:2] == ["mobile", "eccv16"]
    assert settings["model"]["choice_labels"]["mobile"] == config["models"][0]["description"]
    assert settings["device"]["choices"] == list(schema["device"]["choices"])
    assert settings["saturation"]["slider_maximum"] == 2.0
    assert settings["temperature"]["slider_maximum"] > 0


def test_gimp_command_comes_from_an_entry_point_and_a_broken_one_is_skipped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    (gimp,) = [e for e in importlib.metadata.entry_points(group=COMMANDS_GROUP)
               if e.name == "gimp"]
    assert gimp.value == "chromatize_gimp.command:register"
    broken = importlib.metadata.EntryPoint("broken", "no_such_module:register", COMMANDS_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [broken, gimp] if group == COMMANDS_GROUP else [])
    assert main(["gimp", "uninstall", "--plug-ins-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "nothing to remove" in captured.out
    assert "warning: command 'broken'" in captured.err and "no_such_module" in captured.err


def test_the_core_never_imports_the_gimp_package(tmp_path: Path) -> None:
    """import-linter's view: no module of chromatize (function-local imports included) imports
    chromatize_gimp."""
    config = tmp_path / "importlinter.ini"
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed")
    config.write_text("[importlinter]\nroot_packages =\n    chromatize\n    chromatize_gimp\n"
                      "[importlinter:contract:core]\nname = core without GIMP\n"
                      "type = forbidden\nsource_modules = chromatize\n"
                      "forbidden_modules = chromatize_gimp\n")
    proc = subprocess.run([str(lint), "--config", str(config), "--no-cache"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_install_writes_a_help_page_and_model_availability(tmp_path: Path) -> None:
    result = install("3", tmp_path)
    index = (result.plugin_dir / "help" / "en" / "gimp-help.xml").read_text()
    assert 'id="plug-in-chromatize-colorize"' in index and 'ref="index.html"' in index
    page = (result.plugin_dir / "help" / "en" / "index.html").read_text()
    assert "<h1>Colorize (AI)</h1>" in page and "Download weights if needed" in page
    models = json.loads(result.config.read_text())["settings"]["model"]["models"]
    by_name = {entry["name"]: entry for entry in models}
    assert by_name["mobile"]["status"] in ("shipped", "cached")
    assert by_name["eccv16"]["downloadable"] is True
    assert by_name["mobile"]["default_input_size"] == 224
    assert by_name["mobile"]["accepts_hints"] is True
    assert by_name["eccv16"]["accepts_hints"] is False
    assert "Hints layer" in page and "Guiding the colours" in page
    assert all(entry["weights_files"] for entry in models)
