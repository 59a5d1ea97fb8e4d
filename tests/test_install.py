"""`make install-service` into a staging root, as a box gets it: runtime only, and the daemon's commands work."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import pytest

REPO = Path(__file__).resolve().parents[1]
PREFIX = "/opt/edge-depth"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory, synthetic_ir_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("destdir")
    args = ["make", "--no-print-directory", "install-service", f"DESTDIR={root}", f"PREFIX={PREFIX}"]
    run = subprocess.run(
        [*args, f"MODELS={synthetic_ir_dir}"], cwd=REPO, capture_output=True, text=True, timeout=900, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "staged under" in run.stdout and "not enabled" in run.stdout
    return root


def installed(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def test_the_service_environment_has_the_runtime_and_nothing_else(staged: Path) -> None:
    python = installed(staged, f"{PREFIX}/lib/edge-depth/venv/bin/python")
    for module in ("openvino", "cv2", "numpy", "paho.mqtt", "pydantic", "yaml", "edge_depth.service"):
        probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True, check=False)
        assert probe.returncode == 0, f"{module}: {probe.stderr}"
    for module in ("torch", "nncf", "pytest", "ruff", "mypy"):
        probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True, check=False)
        assert probe.returncode != 0, f"{module} must not be in the service's environment"


def test_files_land_where_the_unit_looks_for_them(staged: Path) -> None:
    lib = installed(staged, f"{PREFIX}/lib/edge-depth")
    assert (lib / "models" / "midas_small_int8.xml").is_file() and (lib / "models" / "midas_small_int8.bin").is_file()
    assert (lib / "samples" / "solidWhiteRight.mp4").is_file()
    unit = installed(staged, "/etc/systemd/system/edge-depth.service").read_text()
    assert f"ExecStart={PREFIX}/lib/edge-depth/venv/bin/edge-depth run --config /etc/edge-depth/edge-depth.yaml" in unit
    assert f"WorkingDirectory={PREFIX}/lib/edge-depth" in unit and "/usr/local" not in unit
    config = installed(staged, "/etc/edge-depth/edge-depth.yaml").read_text()
    assert f"path: {PREFIX}/lib/edge-depth/models/midas_small_int8.xml" in config
    assert f"source: {PREFIX}/lib/edge-depth/samples/solidWhiteRight.mp4" in config
    password = installed(staged, "/etc/edge-depth/mqtt_password")
    assert password.stat().st_mode & 0o777 == 0o600


def test_installed_entry_point_checks_the_config_and_predicts_without_torch(staged: Path, tmp_path: Path) -> None:
    edge_depth = installed(staged, f"{PREFIX}/lib/edge-depth/venv/bin/edge-depth")
    # The installed config names the final paths; seen from outside the staging root they live under it.
    config = installed(staged, "/etc/edge-depth/edge-depth.yaml").read_text()
    rooted = tmp_path / "edge-depth.yaml"
    rooted.write_text(config.replace(f"{PREFIX}/", f"{installed(staged, PREFIX)}/"))
    check = subprocess.run([edge_depth, "check-config", rooted], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    assert "ok: 1 camera (sample)" in check.stdout

    model = installed(staged, f"{PREFIX}/lib/edge-depth/models/midas_small_int8.xml")
    photo = REPO / "tests" / "fixtures" / "photos" / "indoor" / "kazuhito00_sample.jpg"
    out = tmp_path / "out"
    predict = subprocess.run(
        [edge_depth, "predict", photo, "--model", model, "-o", out], capture_output=True, text=True, check=False
    )
    assert predict.returncode == 0, predict.stderr
    heatmap = cv2.imread(str(out / "kazuhito00_sample_depth.jpg"))
    source = cv2.imread(str(photo))
    assert heatmap is not None and source is not None and heatmap.shape == source.shape


def test_installing_again_keeps_the_users_config(staged: Path, synthetic_ir_dir: Path) -> None:
    config = installed(staged, "/etc/edge-depth/edge-depth.yaml")
    config.write_text(config.read_text() + "# edited by the user\n")
    args = ["make", "--no-print-directory", "install-service", f"DESTDIR={staged}", f"PREFIX={PREFIX}"]
    run = subprocess.run(
        [*args, f"MODELS={synthetic_ir_dir}"], cwd=REPO, capture_output=True, text=True, timeout=900, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "kept the existing" in run.stdout
    assert config.read_text().endswith("# edited by the user\n")
