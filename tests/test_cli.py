"""The ``edge-depth`` command as a user runs it: check-config, run with a bad config, predict, the systemd unit."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"


def edge_depth(*args: str, cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_depth.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge-depth.yaml"
    path.write_text(text)
    return path


def test_check_config_accepts_a_valid_file(tmp_path: Path, int8_ir: Path, sample_clip: Path) -> None:
    cfg = write_config(tmp_path, f"model:\n  path: {int8_ir}\ncameras:\n  - name: clip\n    source: {sample_clip}\n")
    result = edge_depth("check-config", str(cfg))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and "ok: 1 camera (clip)" in result.stdout


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("cameras:\n  - name: a\n    source: x.mp4\n    fps_limt: 5\n", ":4: cameras[0].fps_limt"),
        ("mqtt:\n  port: 99999\ncameras:\n  - name: a\n    source: 0\n", ":2: mqtt.port"),
        ("mqtt:\n  keepalive_s: soon\ncameras:\n  - name: a\n    source: 0\n", ":2: mqtt.keepalive_s"),
        ("model:\n  input_size: 250x190\ncameras:\n  - name: a\n    source: 0\n", ":2: model.input_size"),
        ("cameras:\n  - name: a\n    source: 0\n  - name: a\n    source: 1\n", ":4: cameras[1].name"),
        ("cameras: [\n", ":2"),
    ],
)
def test_bad_config_exits_2_naming_key_and_line(tmp_path: Path, body: str, expected: str) -> None:
    cfg = write_config(tmp_path, body)
    for command in (["check-config", str(cfg)], ["run", "--config", str(cfg)]):
        result = edge_depth(*command)
        assert result.returncode == 2, result
        assert expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_missing_model_file_is_named(tmp_path: Path, sample_clip: Path) -> None:
    missing = tmp_path / "nowhere" / "midas_small_int8.xml"
    cfg = write_config(tmp_path, f"model:\n  path: {missing}\ncameras:\n  - name: a\n    source: {sample_clip}\n")
    for command in (["check-config", str(cfg)], ["run", "--config", str(cfg)]):
        result = edge_depth(*command)
        assert result.returncode == 2
        assert str(missing) in result.stderr and "model.path" in result.stderr and ":2:" in result.stderr


def test_predict_writes_heatmaps_and_raw_depth_for_photos(tmp_path: Path, int8_ir: Path) -> None:
    photos = [FIXTURES / "photos" / "indoor" / "kazuhito00_sample.jpg", FIXTURES / "nyu" / "rgb_00065.png"]
    result = edge_depth("predict", *map(str, photos), "--model", str(int8_ir), "-o", str(tmp_path), "--raw", "npy")
    assert result.returncode == 0, result.stderr
    for photo in photos:
        heat = cv2.imread(str(tmp_path / f"{photo.stem}_depth.jpg"))
        source = cv2.imread(str(photo))
        assert heat is not None and source is not None and heat.shape == source.shape
        raw = np.load(tmp_path / f"{photo.stem}_depth.npy")
        assert raw.dtype == np.float32 and raw.shape[1] == 256  # the model's resolution, longer side 256


def test_predict_names_an_unreadable_image(tmp_path: Path, int8_ir: Path) -> None:
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    result = edge_depth("predict", str(bad), "--model", str(int8_ir), "-o", str(tmp_path))
    assert result.returncode == 2 and f"{bad}: not a readable image" in result.stderr


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """``systemd-analyze verify`` checks the unit's syntax and that its programs exist, so point them at this venv."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is needed (Debian package systemd)"
    unit = (REPO / "systemd" / "edge-depth.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=" in unit and "ExecStartPre=" in unit
    local = unit.replace(
        "/usr/local/lib/edge-depth/venv/bin/edge-depth", str(Path(sys.executable).parent / "edge-depth")
    )
    (tmp_path / "edge-depth.service").write_text(local)
    verify = subprocess.run(
        [analyze, "verify", str(tmp_path / "edge-depth.service")], capture_output=True, text=True, check=False
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr.strip() == "", verify.stderr
    security = subprocess.run(
        [analyze, "security", "--offline=yes", "--threshold=30", str(tmp_path / "edge-depth.service")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert security.returncode == 0, security.stdout[-2000:]


def test_convert_is_reachable_through_edge_depth_with_its_own_options(tmp_path: Path) -> None:
    missing = tmp_path / "midas_v21_small_256.pt"
    result = edge_depth("convert", "--weights", str(missing), "--out", str(tmp_path / "models"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and str(missing) in result.stderr
    assert "Traceback" not in result.stderr


def _exposure(analyze: str, unit: Path) -> float:
    security = subprocess.run(
        [analyze, "security", "--offline=yes", str(unit)], capture_output=True, text=True, check=False
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout + security.stderr)
    assert found, security.stdout[-2000:]
    return float(found.group(1))


def test_accelerator_drop_in_opens_gpu_and_npu_and_keeps_exposure_low(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is needed (Debian package systemd)"
    unit = (
        (REPO / "systemd" / "edge-depth.service")
        .read_text()
        .replace("/usr/local/lib/edge-depth/venv/bin/edge-depth", str(Path(sys.executable).parent / "edge-depth"))
    )
    drop_in = (REPO / "systemd" / "accelerators.conf").read_text()
    assert "DeviceAllow=char-drm rw" in drop_in and "DeviceAllow=char-accel rw" in drop_in
    assert "SupplementaryGroups=render" in drop_in
    # systemd merges a drop-in's [Service] lines into the unit's: the same as appending them there.
    merged = unit.replace("[Install]", drop_in.split("[Service]\n", 1)[1] + "\n[Install]")
    plain, accelerated = tmp_path / "plain" / "edge-depth.service", tmp_path / "gpu" / "edge-depth.service"
    for path, text in ((plain, unit), (accelerated, merged)):
        path.parent.mkdir()
        path.write_text(text)
        verify = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, check=False)
        assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    assert _exposure(analyze, plain) <= 2.0
    assert _exposure(analyze, accelerated) <= 2.0
