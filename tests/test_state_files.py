"""State files in the state directory: a broken one is ignored with one warning, saves are atomic and durable,
and a save that fails leaves the previous file and no temporary file behind."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from edge_depth.alerts.camera import CameraAlerts
from edge_depth.alerts.reference import BaselineReference, atomic_write, read_baseline
from edge_depth.config.alerts import BaselineConfig, CameraAlertsConfig

REPO = Path(__file__).resolve().parents[1]


def _huge_header(path: Path) -> None:
    """A valid .npy header that claims a (100000, 100000) float32 array (40 GB), followed by 16 bytes."""
    header = {"descr": "<f4", "fortran_order": False, "shape": (100_000, 100_000)}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\0" * 16)


def _broken_files() -> dict[str, object]:
    return {
        "empty": b"",
        "huge": _huge_header,
        "garbage": b"\x00\x01not a numpy file at all" * 10,
        "truncated": "truncated",
        "three_d": np.zeros((2, 3, 4), np.float32),
        "not_finite": np.full((4, 4), np.nan, np.float32),
        "ints": np.zeros((4, 4), np.int64),
    }


@pytest.mark.parametrize("kind", sorted(_broken_files()))
def test_a_broken_baseline_file_is_one_warning_and_no_baseline(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cam.baseline.npy"
    content = _broken_files()[kind]
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, np.ndarray):
        np.save(path, content)
    elif content == "truncated":
        np.save(path, np.ones((64, 64), np.float32))
        path.write_bytes(path.read_bytes()[:-100])
    else:
        content(path)  # type: ignore[operator]
    with caplog.at_level(logging.WARNING):
        ref = BaselineReference(BaselineConfig(), path)
    assert not ref.ready
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0].getMessage()
    assert "\n" not in warnings[0].getMessage()


def test_a_broken_alert_state_file_is_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "cam.alerts.json").write_bytes(b"\xff\xfe{{{")
    (tmp_path / "cam.baseline.npy").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        alerts = CameraAlerts("cam", CameraAlertsConfig(), state_dir=tmp_path)
    assert not alerts.baseline_ready
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2
    assert any("cam.alerts.json" in w for w in warnings) and any("cam.baseline.npy" in w for w in warnings)


def _learned(path: Path, value: float = 0.5) -> BaselineReference:
    ref = BaselineReference(BaselineConfig(), path)
    ref._adopt(np.full((48, 64), value, np.float32))  # as learning would
    return ref


def test_a_saved_baseline_is_read_back_and_unchanged_ones_are_not_rewritten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state" / "cam.baseline.npy"
    ref = _learned(path)
    assert ref.save() is True
    assert ref.save() is False  # unchanged: not written again
    np.testing.assert_array_equal(read_baseline(path), np.full((48, 64), 0.5, np.float32))
    with caplog.at_level(logging.INFO):
        again = BaselineReference(BaselineConfig(), path)
    assert again.ready and any("loaded baseline" in r.getMessage() for r in caplog.records)
    assert again.save() is False  # what was loaded is what the file holds
    assert [p.name for p in path.parent.iterdir()] == ["cam.baseline.npy"]


def test_a_failing_save_keeps_the_old_file_and_removes_the_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cam.baseline.npy"
    _learned(path, 0.25).save()
    ref = _learned(path, 0.75)

    def full(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        ref.save()
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["cam.baseline.npy"]
    np.testing.assert_array_equal(read_baseline(path), np.full((48, 64), 0.25, np.float32))
    assert ref.save() is True  # the failed save did not count as saved


def test_camera_alerts_save_raises_oserror_when_the_state_directory_is_gone(tmp_path: Path) -> None:
    state = tmp_path / "state"
    alerts = CameraAlerts("cam", CameraAlertsConfig(), state_dir=state)
    alerts._reference._adopt(np.full((8, 8), 0.5, np.float32))  # type: ignore[attr-defined]
    state.write_text("a file where the directory was")
    with pytest.raises(OSError):
        alerts.save()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


def test_atomic_write_replaces_in_one_step(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    atomic_write(path, lambda f: f.write(b"old"))
    with pytest.raises(RuntimeError):
        atomic_write(path, lambda f: (f.write(b"half"), (_ for _ in ()).throw(RuntimeError("killed"))))
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["x.json"]


_SAVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import numpy as np
    from edge_depth.alerts.reference import BaselineReference
    from edge_depth.config.alerts import BaselineConfig

    ref = BaselineReference(BaselineConfig(), Path(sys.argv[1]))
    rng = np.random.default_rng()
    print("saving", flush=True)
    while True:
        ref._adopt(rng.random((256, 256), dtype=np.float32))
        ref.save()
    """
)


def test_sigkill_at_random_moments_of_saves_leaves_a_loadable_file_or_none(tmp_path: Path) -> None:
    """20 savers killed at random moments while they save a 256x256 baseline in a loop (each save: temporary
    file, fsync, rename): the file is always whole, and the next start loads it (a leftover temporary file
    is removed)."""
    path = tmp_path / "cam.baseline.npy"
    rng = random.Random(1234)
    pause = threading.Event()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for _ in range(20):
        proc = subprocess.Popen(
            [sys.executable, "-c", _SAVER, str(path)], stdout=subprocess.PIPE, text=True, cwd=REPO, env=env
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "saving"
        pause.wait(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
        if path.exists():
            baseline = read_baseline(path)  # raises on a torn file
            assert baseline.shape == (256, 256)
            assert BaselineReference(BaselineConfig(), path).ready
            assert not path.with_name("cam.baseline.tmp.npy").exists()  # a leftover is removed by the load
