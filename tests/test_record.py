"""``edge-depth record``: the bundled clip through the real capture, resizer and INT8 engine into a recording that
loads with ``Recording`` and replays through the daemon's alert code; its errors are one line and exit 2."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from edge_depth.alerts.camera import CameraAlerts
from edge_depth.capture.replay import Recording
from edge_depth.config import CameraAlertsConfig, load_config
from edge_depth.tools.record import RecordError, record
from tests.support.daemon import REPO, daemon_config

FPS_LIMIT = 10.0  # well below what the model does on two cores, so the frame count does not depend on the machine
WATCH_ALL = {"name": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "min_duration_s": 0}


def write_config(tmp_path: Path, model: Path, cameras: list[dict[str, Any]]) -> Path:
    path = tmp_path / "edge-depth.yaml"
    path.write_text(yaml.safe_dump(daemon_config(None, model, cameras), sort_keys=False))
    return path


def clip_camera(clip: Path, **settings: Any) -> dict[str, Any]:
    return {"name": "clip", "source": str(clip), "fps_limit": FPS_LIMIT, **settings}


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``edge-depth record ARGS`` in a subprocess; its output as text with the carriage returns kept."""
    done = subprocess.run(
        [sys.executable, "-m", "edge_depth.cli", "record", *args],
        cwd=REPO,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


@pytest.mark.slow
def test_three_seconds_of_the_clip_record_and_replay(tmp_path: Path, int8_ir: Path, sample_clip: Path) -> None:
    config = write_config(tmp_path, int8_ir, [clip_camera(sample_clip)])
    out = tmp_path / "clip.npz"

    done = run_cli("--config", str(config), "--camera", "clip", "--seconds", "3", "-o", str(out))

    assert done.returncode == 0, done.stderr
    progress = done.stderr.split("\r")
    assert len(progress) > 3 and all(p.startswith("recording clip: ") for p in progress[1:])  # one updating line
    recording = Recording(out)
    frames = list(recording)
    assert done.stdout.startswith(f"{out}: {len(frames)} frames, ")
    assert done.stdout.rstrip().endswith("fps, with images")
    # 3 s at 10 fps: frames at 0, 0.1, ..., 2.9 s of camera time.
    assert 27 <= len(frames) <= 31
    assert recording.duration_s == pytest.approx(2.9, abs=0.2)
    assert recording.shape == (128, 256)  # 960x540 -> the model's 256x128
    assert all(f.depth.shape == (128, 256) and f.depth.dtype == np.float32 for f in frames)
    assert all(f.image.shape == (128, 256, 3) and f.image.dtype == np.uint8 for f in frames)
    assert all(np.isfinite(f.depth).all() for f in frames)
    assert min(float(f.image.std()) for f in frames) > 20  # the street, not a blank image
    for key in ("captured_mono", "captured_wall", "seq"):
        values = [getattr(f, key) for f in frames]
        assert all(b > a for a, b in itertools.pairwise(values)), key

    # Replayed through the daemon's alert code, as a camera whose source is the recording gets it.
    replaying = write_config(
        tmp_path, int8_ir, [{"name": "replay", "source": str(out), "alerts": {"reference": {"mode": "relative"}}}]
    )
    camera = load_config(replaying).cameras[0]
    assert camera.source_kind() == "recording"
    alerts = CameraAlerts(camera.name, camera.alerts.model_copy(update={"zones": []}))
    outputs = [alerts.process(frame) for frame in Recording(Path(str(camera.source)), camera=camera.name)]
    assert len(outputs) == len(frames)
    assert all(o.calibrated and o.unit == "relative" and o.nearest is not None for o in outputs)
    assert all(o.health.frame_ok for o in outputs)


@pytest.mark.slow
def test_no_images_keeps_the_pictures_out(tmp_path: Path, int8_ir: Path, sample_clip: Path) -> None:
    config = write_config(tmp_path, int8_ir, [clip_camera(sample_clip)])
    with_images, without = tmp_path / "with.npz", tmp_path / "without.npz"
    record(config, "clip", 1.0, with_images)
    done = record(config, "clip", 1.0, without, images=False)

    recording = Recording(without)
    assert len(recording) == done.frames and 8 <= done.frames <= 11
    assert all(not f.image.any() for f in recording)  # stored black
    assert all(np.isfinite(f.depth).all() and f.depth.std() > 0 for f in recording)
    assert without.stat().st_size < 0.85 * with_images.stat().st_size  # the float32 depth is most of the file
    cfg = {"reference": {"mode": "relative"}, "zones": [WATCH_ALL | {"enter": 0.2}], "health": {"enabled": False}}
    alerts = CameraAlerts("clip", CameraAlertsConfig.model_validate(cfg))
    assert all(alerts.process(f).calibrated for f in recording)


def test_an_unknown_camera_or_an_unwritable_output_is_one_line(tmp_path: Path, sample_clip: Path) -> None:
    model = tmp_path / "model.xml"  # the config names an IR that exists; these errors come before it is read
    model.write_text("<net/>")
    model.with_suffix(".bin").write_bytes(b"")
    config = write_config(tmp_path, model, [clip_camera(sample_clip)])
    unknown = run_cli("--config", str(config), "--camera", "porch", "--seconds", "1", "-o", str(tmp_path / "a.npz"))
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    unwritable = run_cli("--config", str(config), "--camera", "clip", "--seconds", "1", "-o", str(blocked / "b.npz"))
    wrong_suffix = run_cli("--config", str(config), "--camera", "clip", "--seconds", "1", "-o", str(tmp_path / "b"))

    for done, message in (
        (unknown, f"error: {config}: no camera 'porch' (cameras: clip)"),
        (unwritable, f"error: {blocked / 'b.npz'}: cannot write (Not a directory)"),
        (wrong_suffix, f"error: {tmp_path / 'b'}: the output must end in .npz (cameras replay .npz sources)"),
    ):
        assert (done.returncode, done.stderr.splitlines(), done.stdout) == (2, [message], "")
    assert not (tmp_path / "a.npz").exists()


@pytest.mark.slow
def test_a_camera_that_never_delivers_is_one_line(tmp_path: Path, int8_ir: Path) -> None:
    dead = {"name": "door", "source": "rtsp://127.0.0.1:9/stream", "open_timeout_s": 1.0}
    config = write_config(tmp_path, int8_ir, [dead])

    done = run_cli("--config", str(config), "--camera", "door", "--seconds", "5", "-o", str(tmp_path / "d.npz"))

    assert done.returncode == 2
    lines = [line for line in done.stderr.split("\r")[-1].splitlines() if line.strip()]
    assert lines[-1].startswith("error: camera 'door': no frame within its open timeout (1 s)"), done.stderr
    assert not (tmp_path / "d.npz").exists()
    with pytest.raises(RecordError, match="no frame within its open timeout"):
        record(config, "door", 5.0, tmp_path / "d.npz")
