"""Before the daemon starts: a device, cache or IR that cannot work is one line at its key, never a crash loop;
the broker can be chosen without editing the config file."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_depth.model.preflight import missing_devices, openvino_message
from tests.support.broker import Mosquitto, MqttRecorder
from tests.support.daemon import Daemon, daemon_config

REPO = Path(__file__).resolve().parents[1]


def edge_depth(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_depth.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def config_file(tmp_path: Path, model: Path, clip: Path, model_extra: str = "") -> Path:
    path = tmp_path / "edge-depth.yaml"
    path.write_text(f"model:\n  path: {model}\n{model_extra}cameras:\n  - name: clip\n    source: {clip}\n")
    return path


@pytest.mark.parametrize(
    ("device", "available", "missing"),
    [
        ("CPU", ["CPU"], []),
        ("GPU", ["CPU"], ["GPU"]),
        ("GPU", ["CPU", "GPU.0", "GPU.1"], []),
        ("GPU.1", ["CPU", "GPU.0"], ["GPU.1"]),
        ("NPU", ["CPU"], ["NPU"]),
        ("AUTO", ["CPU"], []),
        ("AUTO:GPU,CPU", ["CPU"], []),
        ("AUTO:GPU,NPU", ["CPU"], ["GPU", "NPU"]),
        ("MULTI:GPU,CPU", ["CPU"], ["GPU"]),
        ("HETERO:GPU,CPU", ["CPU", "GPU"], []),
    ],
)
def test_missing_devices(device: str, available: list[str], missing: list[str]) -> None:
    assert missing_devices(device, available) == missing


def test_openvino_message_keeps_the_explanation_and_drops_the_cpp_trail() -> None:
    exc = RuntimeError(
        "Exception from src/inference/src/cpp/core.cpp:84:\n"
        "Check 'is_valid_weights_range(m_weights_provider->size(), offset, size)' failed at "
        "src/core/xml_util/src/xml_deserialize_util.cpp:900:\nIncorrect weights in bin file!\n\n"
    )
    assert openvino_message(exc) == "Incorrect weights in bin file!"


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_a_device_the_box_lacks_is_one_line_at_its_key(
    command: str, tmp_path: Path, int8_ir: Path, sample_clip: Path
) -> None:
    cfg = config_file(tmp_path, int8_ir, sample_clip, "  device: GPU\n")
    args = [command, str(cfg)] if command == "check-config" else [command, "--config", str(cfg)]
    result = edge_depth(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{cfg}:3: model.device: GPU: OpenVINO finds no GPU on this machine (it has CPU")


def test_an_unwritable_cache_dir_is_one_line_at_its_key(tmp_path: Path, int8_ir: Path, sample_clip: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    cfg = config_file(tmp_path, int8_ir, sample_clip, f"  cache_dir: {blocker}/openvino\n")
    result = edge_depth("check-config", str(cfg))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"{cfg}:3: model.cache_dir: {blocker}/openvino: cannot write the compiled-model cache here (Not a directory)"
    ]


def test_a_truncated_weights_file_is_caught_by_check_config(tmp_path: Path, int8_ir: Path, sample_clip: Path) -> None:
    model = tmp_path / "cut.xml"
    shutil.copy(int8_ir, model)
    model.with_suffix(".bin").write_bytes(int8_ir.with_suffix(".bin").read_bytes()[:100_000])
    cfg = config_file(tmp_path, model, sample_clip)
    result = edge_depth("check-config", str(cfg))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"{cfg}:2: model.path: {model}: Incorrect weights in bin file!"]


@pytest.mark.slow
def test_the_broker_comes_from_the_environment_or_the_command_line(
    mqtt_broker: Mosquitto,
    int8_ir: Path,
    sample_clip: Path,
    run_daemon: Callable[..., Daemon],
) -> None:
    camera = {"name": "clip", "source": str(sample_clip), "loop": True}
    # The file names a port nobody listens on; the environment names the real broker.
    config = daemon_config(None, int8_ir, [camera], mqtt={"host": "127.0.0.1", "port": 1})
    with MqttRecorder(mqtt_broker.host, mqtt_broker.port, "ed/#") as rec:
        run_daemon(
            config, env={"EDGE_DEPTH_MQTT_HOST": mqtt_broker.host, "EDGE_DEPTH_MQTT_PORT": str(mqtt_broker.port)}
        )
        rec.wait_for_message("ed/available", b"online")


def test_a_bad_broker_override_names_the_option(tmp_path: Path, int8_ir: Path, sample_clip: Path) -> None:
    cfg = config_file(tmp_path, int8_ir, sample_clip)
    result = edge_depth("run", "--config", str(cfg), "--mqtt-port", "0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "--mqtt-port (or EDGE_DEPTH_MQTT_PORT): Input should be greater than or equal to 1"
    ]
