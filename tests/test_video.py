"""Video files, frame folders and TIFF stacks in and out, with real files made by PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from contract_models import TinyColourModel

av = pytest.importorskip("av", minversion="14")
pytest.importorskip("cv2", minversion="4.8")

from chromatize.errors import InputImageError, OutputError  # noqa: E402
from chromatize.options import ColorizeOptions  # noqa: E402
from chromatize.pipeline import Colorizer  # noqa: E402
from chromatize.sequence_files import SequenceJob, colorize_sequence_file  # noqa: E402
from chromatize.video import (  # noqa: E402
    probe_video,
    read_tiff_stack,
    read_video,
    transcode_video,
    write_tiff_stack,
)


def _frame(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 4 + i * 8) % 256, (y * 5) % 256, np.full_like(x, 90)],
                    -1).astype(np.uint8)


def make_clip(path: Path, frames: int = 6, *, rotation: int = 0, audio: bool = True,
              codec: str = "libx264", sar: Fraction | None = Fraction(4, 3)) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=Fraction(24))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        if sar:
            stream.codec_context.sample_aspect_ratio = sar
        if rotation:
            stream.set_display_rotation(rotation)
        sound = out.add_stream("aac", rate=48000) if audio else None
        for i in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(_frame(i), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if sound is not None:
            tone = np.sin(np.arange(48000 // 4) / 8.0).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, 0
            for packet in [*sound.encode(frame), *sound.encode()]:
                out.mux(packet)
    return path


def _audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def _facts(path: Path) -> tuple:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = list(c.decode(v))
        return (len(frames), v.average_rate, v.codec_context.width, v.codec_context.height,
                frames[0].rotation, v.sample_aspect_ratio, [f.pts for f in frames])


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov"])
def test_transcode_keeps_count_rate_size_rotation_aspect_and_audio(tmp_path: Path,
                                                                    suffix: str) -> None:
    src = make_clip(tmp_path / f"in{suffix}", rotation=90)
    dst = tmp_path / f"out{suffix}"
    count = transcode_video(src, dst, lambda rgb: 255 - rgb)
    assert count == 6
    assert _facts(dst) == _facts(src)
    assert _audio_packets(dst) == _audio_packets(src)
    first = next(read_video(dst)).astype(int)
    assert np.abs(first - (255 - _frame(0))).mean() < 6  # the processed pixels were encoded
    assert [p.name for p in tmp_path.iterdir()] == [src.name, dst.name] or \
        sorted(p.name for p in tmp_path.iterdir()) == sorted([src.name, dst.name])


@pytest.mark.parametrize("suffix,codec", [(".webm", "libvpx-vp9"), (".avi", "mpeg4")])
def test_other_containers(tmp_path: Path, suffix: str, codec: str) -> None:
    src = make_clip(tmp_path / f"in{suffix}", codec=codec, audio=False, sar=None)
    dst = tmp_path / f"out{suffix}"
    assert transcode_video(src, dst, lambda rgb: rgb) == 6
    assert _facts(dst)[:4] == _facts(src)[:4]


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = make_clip(tmp_path / "good.mp4").read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good[: len(good) // 2])
    garbage = tmp_path / "garbage.mkv"
    garbage.write_bytes(b"not a video at all" * 100)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    audio_only = tmp_path / "audio.mp4"
    with av.open(str(audio_only), "w") as out:
        sound = out.add_stream("aac", rate=48000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 4800), np.float32), format="fltp",
                                           layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        for packet in [*sound.encode(frame), *sound.encode()]:
            out.mux(packet)
    no_frames = make_clip(tmp_path / "none.mkv", frames=0, audio=True)
    return {"truncated": (truncated, "cannot read|truncated"),
            "garbage": (garbage, "cannot read"), "empty": (empty, "is empty"),
            "audio only": (audio_only, "no video stream"),
            "no frames": (no_frames, "no frames|cannot read")}


def test_bad_videos_give_a_clear_message_and_leave_nothing(tmp_path: Path) -> None:
    for name, (path, message) in _bad_inputs(tmp_path).items():
        dst = tmp_path / f"out_{path.stem}.mp4"
        with pytest.raises(InputImageError, match=message):
            transcode_video(path, dst, lambda rgb: rgb)
        assert not dst.exists(), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files


def test_too_large_frames_and_existing_outputs_are_refused(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mp4")
    with pytest.raises(InputImageError, match="larger than"):
        probe_video(src, max_pixels=1000)
    (tmp_path / "out.mp4").write_bytes(b"keep")
    with pytest.raises(OutputError, match="already exists"):
        transcode_video(src, tmp_path / "out.mp4", lambda rgb: rgb)
    assert (tmp_path / "out.mp4").read_bytes() == b"keep"


def test_colorize_video_file_end_to_end(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "clip.mp4", frames=5)
    colorizer = Colorizer(TinyColourModel(), device="cpu")
    done: list[int] = []
    count = colorize_sequence_file(SequenceJob(src, tmp_path / "clip_color.mp4"),
                                   ColorizeOptions(), colorizer=colorizer, progress=done.append)
    assert count == 5 and done == [1, 2, 3, 4, 5]
    assert _facts(tmp_path / "clip_color.mp4")[0] == 5


def test_frame_folder_and_16_bit_tiff_stack(tmp_path: Path) -> None:
    from chromatize.imageio import read_image, write_image

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in (1, 2, 10):  # numeric order: 1, 2, 10
        write_image(frames / f"f_{i}.png", _frame(i))
    colorizer = Colorizer(TinyColourModel(), device="cpu")
    n = colorize_sequence_file(SequenceJob(frames, tmp_path / "out"), ColorizeOptions(),
                               colorizer=colorizer)
    assert n == 3 and sorted(p.name for p in (tmp_path / "out").iterdir()) == \
        ["f_1.png", "f_10.png", "f_2.png"]
    assert read_image(tmp_path / "out" / "f_10.png").pixels.shape == (48, 64, 3)
    stack = tmp_path / "stack.tif"
    write_tiff_stack(stack, [(_frame(i).astype(np.uint16) * 257) for i in range(3)])
    n = colorize_sequence_file(SequenceJob(stack, tmp_path / "stack_color.tif"),
                               ColorizeOptions(), colorizer=colorizer)
    pages = list(read_tiff_stack(tmp_path / "stack_color.tif"))
    assert n == 3 and len(pages) == 3
    assert pages[0].dtype == np.uint16 and pages[0].shape == (48, 64, 3)


def test_cli_colorizes_a_video_and_evals_a_sequence(tmp_path: Path, capsys) -> None:
    from chromatize.cli import main

    src = make_clip(tmp_path / "clip.mp4", frames=4)
    assert main(["colorize", str(src), "-q", "--device", "cpu"]) == 0
    assert _facts(tmp_path / "clip_color.mp4")[0] == 4
    assert _audio_packets(tmp_path / "clip_color.mp4") == _audio_packets(src)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"junk" * 50)
    assert main(["colorize", str(bad), "-o", str(tmp_path / "bad_out.mp4"), "-q"]) == 1
    assert "cannot read this video" in capsys.readouterr().err
    assert not (tmp_path / "bad_out.mp4").exists()
    assert main(["eval", "--sequence", str(src), "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    assert "warping error" in table and "CDC" in table


def test_cli_sequence_folder(tmp_path: Path) -> None:
    from chromatize.cli import main
    from chromatize.imageio import write_image

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        write_image(frames / f"{i:04d}.png", _frame(i))
    assert main(["colorize", str(frames), "--sequence", "--temporal", "off", "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "frames_color").iterdir()) == \
        ["0000.png", "0001.png", "0002.png"]


def _ab_at(rgb: np.ndarray, y: int, x: int, side: int) -> np.ndarray:
    import torch

    from chromatize.color import rgb_to_lab

    patch = rgb[y - side // 2:y + side // 2 + 1, x - side // 2:x + side // 2 + 1, :3]
    lab = rgb_to_lab(torch.from_numpy(patch.astype(np.float32) / 255.0).permute(2, 0, 1))
    return lab[1:].reshape(2, -1).mean(1).numpy()


def test_cli_video_hints_name_a_frame(tmp_path: Path, capsys) -> None:
    """JSON hints with a "frame" guide that frame of a real H.264 clip: its pixels there carry
    the hint's colour (within the codec's 4:2:0 chroma loss), other frames before it do not."""
    import json

    from chromatize.cli import main
    from chromatize.color import rgb_to_lab

    src = make_clip(tmp_path / "clip.mp4", frames=4, audio=False)
    hints = tmp_path / "hints.json"
    hints.write_text(json.dumps([{"frame": 2, "x": 30, "y": 24, "color": "#1f9e3a",
                                  "size": 9}]))
    out = tmp_path / "guided.mp4"
    assert main(["colorize", str(src), "-o", str(out), "--hints", str(hints), "-q",
                 "--device", "cpu", "--temporal", "off"]) == 0
    frames = [f for f in read_video(out)]
    import torch

    green = rgb_to_lab(torch.tensor([0x1F, 0x9E, 0x3A], dtype=torch.float32)[:, None, None]
                       / 255.0)[1:, 0, 0].numpy()
    guided = _ab_at(frames[2], 24, 30, 5)
    assert np.abs(guided - green).max() < 12, (guided, green)
    assert np.abs(_ab_at(frames[0], 24, 30, 5) - green).max() > 20

    hints.write_text(json.dumps([{"frame": 9, "x": 30, "y": 24, "color": "#1f9e3a"}]))
    bad = tmp_path / "bad.mp4"
    assert main(["colorize", str(src), "-o", str(bad), "--hints", str(hints), "-q"]) == 1
    assert "hints name frame 9 but clip.mp4 has 4 frames" in capsys.readouterr().err
    assert not bad.exists()


def test_cli_sequence_hints_dir_per_frame_and_bad_hints(tmp_path: Path, capsys) -> None:
    from chromatize.cli import main
    from chromatize.imageio import read_image, write_image

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        write_image(frames / f"f{i}.png", _frame(i))
    hint_dir = tmp_path / "hints"
    hint_dir.mkdir()
    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[20:27, 40:47] = (200, 40, 160, 255)  # a magenta dot on the first frame
    write_image(hint_dir / "f0.png", rgba)
    assert main(["colorize", str(frames), "--sequence", "--hints-dir", str(hint_dir), "-q",
                 "--device", "cpu"]) == 0
    first = read_image(tmp_path / "frames_color" / "f0.png").pixels
    import torch

    from chromatize.color import rgb_to_lab

    magenta = rgb_to_lab(torch.tensor([200.0, 40.0, 160.0])[:, None, None] / 255.0)[1:, 0, 0]
    assert np.abs(_ab_at(first, 23, 43, 5) - magenta.numpy()).max() < 3

    # A hint image of the wrong size fails the sequence clearly and writes nothing.
    write_image(hint_dir / "f0.png", np.zeros((10, 10, 4), np.uint8) + 255, overwrite=True)
    target = tmp_path / "again"
    assert main(["colorize", str(frames), "--sequence", "--hints-dir", str(hint_dir),
                 "--out-dir", str(target), "-q"]) == 1
    assert "10x10" in capsys.readouterr().err
    assert not (target / "frames").exists()
    # A folder whose files name no frame says how to name them.
    (hint_dir / "f0.png").unlink()
    write_image(hint_dir / "other.png", rgba)
    assert main(["colorize", str(frames), "--sequence", "--hints-dir", str(hint_dir),
                 "-o", str(tmp_path / "x"), "-q"]) == 1
    assert "names a frame" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_models_without_hints_refuse_sequence_hints_before_any_frame(tmp_path: Path) -> None:
    from chromatize.errors import ChromatizeError

    src = make_clip(tmp_path / "clip.mp4", frames=3, audio=False)
    hints = tmp_path / "h.json"
    hints.write_text('[{"x": 3, "y": 3, "color": "#ff0000"}]')
    colorizer = Colorizer(TinyColourModel(), device="cpu")
    with pytest.raises(ChromatizeError, match="does not accept colour hints"):
        colorize_sequence_file(SequenceJob(src, tmp_path / "o.mp4", hints=hints),
                               ColorizeOptions(), colorizer=colorizer)
    assert not (tmp_path / "o.mp4").exists()
