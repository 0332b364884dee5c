"""Weights resolution, download and loading against a real HTTP server on 127.0.0.1.

The server (http.server in a thread) serves a randomly initialised ECCV16 state dict in the
official layout, honours ``Range`` requests, and can be told to cut a transfer short, so that
resuming is exercised over real sockets. Specs pointing at it are built directly as ModelSpec.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from eccv16_layout import eccv16_spec, official_layout, random_official_state_dict
from local_http import LocalServer, Route

from chromatize.errors import DownloadError, ModelUnavailableError, WeightsError
from chromatize.models.eccv16 import ECCV16
from chromatize.weights import (
    PART_SUFFIX,
    cache_dir,
    download_weights,
    load_model,
    load_state_dict,
    resolve_weights,
)


@pytest.fixture(scope="module")
def official_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str]:
    """Bytes and sha256 of a random ECCV16 state dict saved like the official release."""
    path = tmp_path_factory.mktemp("official") / "colorization_release_v2-random.pth"
    torch.save(random_official_state_dict(seed=7), path)
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def module_server() -> Iterator[LocalServer]:
    server = LocalServer()
    yield server
    server.close()


@pytest.fixture()
def server(module_server: LocalServer) -> LocalServer:
    module_server.state.routes.clear()
    module_server.state.log.clear()
    return module_server


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("CHROMATIZE_CACHE_DIR", str(cache))
    return cache


def cache_files(cache: Path) -> set[str]:
    return {p.name for p in cache.iterdir()} if cache.exists() else set()


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------


def test_cache_dir_follows_environment(isolated_cache: Path) -> None:
    assert cache_dir() == isolated_cache


def test_download_with_correct_hash_loads(
    server: LocalServer, official_file: tuple[bytes, str], isolated_cache: Path
) -> None:
    data, digest = official_file
    server.state.routes["/w.pth"] = Route(data)
    spec = eccv16_spec(server.url("/w.pth"), digest)

    model = load_model(spec, allow_download=True)

    final = isolated_cache / spec.filename
    assert final.read_bytes() == data
    assert cache_files(isolated_cache) == {spec.filename}  # no .part left behind
    assert isinstance(model, ECCV16) and not model.training
    expected = torch.load(final, weights_only=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key

    # Second load comes from the cache: no new request reaches the server.
    requests = len(server.state.log)
    load_model(spec, allow_download=True)
    assert len(server.state.log) == requests


def test_prefix_hash_like_torch_hub_file_names_is_accepted(
    server: LocalServer, official_file: tuple[bytes, str]
) -> None:
    data, digest = official_file
    server.state.routes["/w.pth"] = Route(data)
    path = resolve_weights(eccv16_spec(server.url("/w.pth"), digest[:8]), allow_download=True)
    assert path.read_bytes() == data


def test_wrong_hash_is_rejected_and_nothing_is_kept(
    server: LocalServer, official_file: tuple[bytes, str], isolated_cache: Path
) -> None:
    data, digest = official_file
    server.state.routes["/w.pth"] = Route(data)
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:]
    spec = eccv16_spec(server.url("/w.pth"), wrong)
    with pytest.raises(DownloadError, match=rf"sha256 {digest}.*expected sha256 {wrong}"):
        resolve_weights(spec, allow_download=True, progress=False)
    assert cache_files(isolated_cache) == set()


def test_truncated_file_fails_the_hash_check(
    server: LocalServer, official_file: tuple[bytes, str], isolated_cache: Path
) -> None:
    """The server sends a complete response of a file that is itself cut short."""
    data, digest = official_file
    server.state.routes["/w.pth"] = Route(data[: len(data) // 2])
    spec = eccv16_spec(server.url("/w.pth"), digest)
    with pytest.raises(DownloadError, match="sha256"):
        resolve_weights(spec, allow_download=True, progress=False)
    assert cache_files(isolated_cache) == set()


def test_404_gives_clear_error(server: LocalServer, isolated_cache: Path) -> None:
    spec = eccv16_spec(server.url("/nowhere.pth"), "9b330a0b")
    with pytest.raises(DownloadError, match=r"HTTP 404"):
        download_weights(spec, progress=False)
    assert cache_files(isolated_cache) == set()


def test_server_gone_gives_clear_error(isolated_cache: Path) -> None:
    gone = LocalServer()
    url = gone.url("/w.pth")
    gone.close()  # the port is closed now: connection refused
    spec = eccv16_spec(url, "9b330a0b")
    with pytest.raises(DownloadError, match=r"cannot reach http://127\.0\.0\.1:\d+/w\.pth"):
        resolve_weights(spec, allow_download=True, progress=False)
    assert cache_files(isolated_cache) == set()


def test_interrupted_transfer_keeps_partial_and_resumes(
    server: LocalServer, official_file: tuple[bytes, str], isolated_cache: Path
) -> None:
    data, digest = official_file
    cut = len(data) // 3
    server.state.routes["/w.pth"] = Route(data, cut_after=cut, cut_times=1)
    spec = eccv16_spec(server.url("/w.pth"), digest)
    part = isolated_cache / (spec.filename + PART_SUFFIX)

    with pytest.raises(DownloadError, match=rf"stopped after {cut} of {len(data)} bytes.*resume"):
        resolve_weights(spec, allow_download=True, progress=False)
    assert not (isolated_cache / spec.filename).exists()
    assert part.read_bytes() == data[:cut]

    path = resolve_weights(spec, allow_download=True, progress=False)
    assert path.read_bytes() == data
    assert not part.exists()
    # The second request asked only for the rest, and only the rest was sent.
    assert server.state.log[-1] == ("/w.pth", f"bytes={cut}-", len(data) - cut)


def test_resume_from_a_stale_complete_partial_restarts(
    server: LocalServer, official_file: tuple[bytes, str], isolated_cache: Path
) -> None:
    """A .part as long as the file gets 416 from the server; the download starts over."""
    data, digest = official_file
    server.state.routes["/w.pth"] = Route(data)
    spec = eccv16_spec(server.url("/w.pth"), digest)
    isolated_cache.mkdir(parents=True)
    (isolated_cache / (spec.filename + PART_SUFFIX)).write_bytes(b"x" * len(data))

    path = resolve_weights(spec, allow_download=True, progress=False)
    assert path.read_bytes() == data
    assert [entry[1] for entry in server.state.log] == [f"bytes={len(data)}-", None]


def test_server_without_range_support_restarts_cleanly(
    server: LocalServer, official_file: tuple[bytes, str], isolated_cache: Path
) -> None:
    data, digest = official_file
    server.state.routes["/w.pth"] = Route(data, ignore_range=True)
    spec = eccv16_spec(server.url("/w.pth"), digest)
    isolated_cache.mkdir(parents=True)
    (isolated_cache / (spec.filename + PART_SUFFIX)).write_bytes(data[:1000])

    path = resolve_weights(spec, allow_download=True, progress=False)
    assert path.read_bytes() == data


def test_no_download_unless_allowed(server: LocalServer, isolated_cache: Path) -> None:
    spec = eccv16_spec(server.url("/w.pth"), "9b330a0b")
    with pytest.raises(ModelUnavailableError, match=r"not downloaded yet.*models download"):
        resolve_weights(spec)
    assert server.state.log == []
    assert cache_files(isolated_cache) == set()


def test_force_redownload_replaces_a_corrupted_cache_file(
    server: LocalServer, official_file: tuple[bytes, str], isolated_cache: Path
) -> None:
    data, digest = official_file
    server.state.routes["/w.pth"] = Route(data)
    spec = eccv16_spec(server.url("/w.pth"), digest)
    isolated_cache.mkdir(parents=True)
    (isolated_cache / spec.filename).write_bytes(data[:-10])

    with pytest.raises(WeightsError, match=rf"{spec.filename}: sha256 is .*--force"):
        resolve_weights(spec, allow_download=True, progress=False)
    with pytest.raises(WeightsError, match=rf"expected sha256 {digest}.*--force"):
        download_weights(spec, progress=False)  # without force the bad file is not trusted

    path = download_weights(spec, force=True, progress=False)
    assert path.read_bytes() == data


# --------------------------------------------------------------------------------------------
# Loading files
# --------------------------------------------------------------------------------------------


def test_explicit_path_with_wrong_architecture(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"model1.0.weight": torch.zeros(32, 1, 3, 3), "head.weight": torch.zeros(4)}, path)
    with pytest.raises(WeightsError) as info:
        load_model("eccv16", weights=path)
    message = str(info.value)
    assert str(path) in message and "explicit file" in message
    assert f"{len(official_layout()) - 1} missing keys (model1.0.bias, model1.2.weight" in message
    assert "1 unexpected keys (head.weight)" in message
    assert "model1.0.weight (32, 1, 3, 3) instead of (64, 1, 3, 3)" in message


def test_explicit_path_in_official_layout_loads(tmp_path: Path) -> None:
    path = tmp_path / "mine.pth"
    torch.save(random_official_state_dict(seed=2), path)
    model = load_model("eccv16", weights=path)
    assert isinstance(model, ECCV16) and not model.training


def test_wrong_bin_order_is_a_weights_error(tmp_path: Path) -> None:
    state = random_official_state_dict(seed=2)
    state["model_out.weight"] = state["model_out.weight"].flip(1)
    path = tmp_path / "flipped.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"flipped\.pth.*model_out\.weight"):
        load_model("eccv16", weights=path)


def test_weights_with_infinities_are_refused_by_name(tmp_path: Path) -> None:
    """A float16 overflow (or a diverged run) leaves inf in a tensor, and every colour comes out
    NaN: loading says which tensor instead of colorizing gray."""
    state = random_official_state_dict(seed=2)
    state["model3.2.weight"][0, 0, 0, 0] = float("inf")
    path = tmp_path / "overflowed.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError,
                       match=r"overflowed\.pth .*non-finite values .*model3\.2\.weight"):
        load_model("eccv16", weights=path)


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"nope\.pth does not exist"):
        load_model("eccv16", weights=tmp_path / "nope.pth")


def test_corrupted_files_give_weights_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a torch file" * 100)
    with pytest.raises(WeightsError, match=r"garbage\.pth as pth: it is corrupted") as info:
        load_state_dict(garbage)
    assert "weights_only=False" not in str(info.value)  # never advise unsafe loading

    truncated = tmp_path / "truncated.pth"
    torch.save(random_official_state_dict(seed=3), truncated)
    truncated.write_bytes(truncated.read_bytes()[:100_000])
    with pytest.raises(WeightsError, match=r"truncated\.pth as pth.*corrupted"):
        load_state_dict(truncated)

    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\xff" * 64)
    with pytest.raises(WeightsError, match=r"bad\.safetensors as safetensors"):
        load_state_dict(bad_st)

    not_a_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_a_dict)
    with pytest.raises(WeightsError, match="not hold a plain state dict"):
        load_state_dict(not_a_dict)


class _Payload:
    """A pickled object that weights_only loading must refuse to construct."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this must never run",))


def test_pickles_with_code_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"x": _Payload()}, path)
    with pytest.raises(WeightsError, match=r"evil\.pth"):
        load_state_dict(path)
    assert "this must never run" not in capsys.readouterr().out


def test_safetensors_round_trip(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = {"a": torch.arange(6, dtype=torch.float16).reshape(2, 3), "b": torch.ones(2)}
    path = tmp_path / "ours.safetensors"
    save_file(state, str(path))
    loaded = load_state_dict(path)
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_cached_file_is_preferred_and_explicit_path_wins(
    tmp_path: Path, official_file: tuple[bytes, str], isolated_cache: Path
) -> None:
    data, digest = official_file
    spec = eccv16_spec("http://127.0.0.1:9/never-contacted", digest)
    isolated_cache.mkdir(parents=True)
    (isolated_cache / spec.filename).write_bytes(data)
    assert resolve_weights(spec) == isolated_cache / spec.filename

    explicit = tmp_path / "explicit.pth"
    explicit.write_bytes(b"anything")
    assert resolve_weights(spec, explicit) == explicit


def test_model_without_url_or_weights_is_unavailable(isolated_cache: Path) -> None:
    spec = replace(eccv16_spec(None, None), shipped="shipped/not-there.safetensors")
    with pytest.raises(ModelUnavailableError, match="not in this build"):
        load_model(spec)
    with pytest.raises(ModelUnavailableError, match="not in this build .*no download URL"):
        download_weights(spec)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="POSIX advisory locks only")
def test_concurrent_download_of_the_same_file_is_refused(
    server: LocalServer, official_file: tuple[bytes, str], isolated_cache: Path
) -> None:
    import fcntl

    data, digest = official_file
    server.state.routes["/w.pth"] = Route(data)
    spec = eccv16_spec(server.url("/w.pth"), digest)
    isolated_cache.mkdir(parents=True)
    part = isolated_cache / (spec.filename + PART_SUFFIX)
    with open(part, "ab") as other:  # another download holds the lock on the .part file
        other.write(data[:500])
        other.flush()
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        with pytest.raises(DownloadError, match="being downloaded by another process"):
            resolve_weights(spec, allow_download=True, progress=False)
        assert server.state.log == []
        assert part.read_bytes() == data[:500]  # the other download's bytes are untouched
    assert resolve_weights(spec, allow_download=True, progress=False).read_bytes() == data


def test_unusable_cache_dir_is_a_clear_error(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    monkeypatch.setenv("CHROMATIZE_CACHE_DIR", str(blocker / "cache"))
    server.state.routes["/w.pth"] = Route(b"data")
    spec = eccv16_spec(server.url("/w.pth"), "9b330a0b")
    with pytest.raises(DownloadError, match=r"cannot create the weights cache .*a-file"):
        resolve_weights(spec, allow_download=True, progress=False)
    assert server.state.log == []


def test_empty_response_fails_the_hash_check(server: LocalServer, isolated_cache: Path) -> None:
    server.state.routes["/w.pth"] = Route(b"")
    spec = eccv16_spec(server.url("/w.pth"), "9b330a0b")
    with pytest.raises(DownloadError, match="sha256 e3b0c442"):  # the digest of nothing
        resolve_weights(spec, allow_download=True, progress=False)
    assert cache_files(isolated_cache) == set()
