"""The OpenVINO engine on real IRs: reshape per input size, asynchronous results, what it reports, bad files."""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_depth.config.schema import Config
from edge_depth.frames import DepthFrame, Frame
from edge_depth.model.contract import MIDAS_V21_SMALL, SPEC_KEYS
from edge_depth.model.engine import DepthEngine, ModelError
from edge_depth.stages import build_stages

FIXTURES = Path(__file__).parent / "fixtures"


def test_engine_compiles_per_input_size_and_reports_what_it_runs(synthetic_ir_dir: Path) -> None:
    engine = DepthEngine(synthetic_ir_dir / "midas_small_fp32.xml", hint="LATENCY")
    image = np.zeros((192, 256, 3), np.uint8)
    assert engine.infer(image).shape == (192, 256)
    assert engine.infer(np.zeros((128, 256, 3), np.uint8)).shape == (128, 256)
    info = engine.info
    assert info.precision == "fp32" and info.ir_input_size == (256, 256)
    assert info.execution_devices == ("CPU",) and info.inference_precision in {"f32", "bf16", "f16"}


def test_f32_can_be_forced_and_matches_the_default_closely(synthetic_ir_dir: Path) -> None:
    path = synthetic_ir_dir / "midas_small_fp32.xml"
    forced = DepthEngine(path, hint="LATENCY", inference_precision="f32")
    default = DepthEngine(path, hint="LATENCY")
    photo = cv2.imread(str(FIXTURES / "nyu" / "rgb_00065.png"))
    assert photo is not None
    image = cv2.resize(photo, (256, 192), interpolation=cv2.INTER_CUBIC)
    exact, auto = forced.infer(image), default.infer(image)
    assert forced.info.inference_precision == "f32"
    # bf16 where the CPU has it: close, not equal (0.96 measured; untrained synthetic weights amplify rounding)
    assert np.corrcoef(exact.ravel(), auto.ravel())[0, 1] > 0.9


def test_asynchronous_results_carry_their_frame(synthetic_ir_dir: Path) -> None:
    engine = DepthEngine(synthetic_ir_dir / "midas_small_int8.xml")
    results: list[DepthFrame] = []
    done = threading.Event()

    def collect(result: DepthFrame) -> None:
        results.append(result)
        if len(results) == 6:
            done.set()

    engine.set_result_callback(collect)
    for seq in range(1, 7):
        image = np.full((128, 256, 3), seq * 20, np.uint8)
        engine.submit(Frame("cam", seq, 1.0 * seq, 100.0 + seq, image, (960, 540)))
    assert done.wait(60)
    assert sorted(r.seq for r in results) == [1, 2, 3, 4, 5, 6]
    first = next(r for r in results if r.seq == 1)
    assert first.depth.shape == (128, 256) and first.depth.dtype == np.float32
    assert first.source_size == (960, 540) and first.captured_wall == 101.0 and first.infer_ms > 0


def test_a_missing_or_foreign_model_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model file not found"):
        DepthEngine(tmp_path / "missing.xml")
    bogus = tmp_path / "bogus.xml"
    bogus.write_text("<net></net>")
    bogus.with_suffix(".bin").write_bytes(b"")
    with pytest.raises(ModelError, match=str(bogus)):
        DepthEngine(bogus)


def test_the_engine_reports_the_models_spec_and_checks_a_fixed_size_against_it(synthetic_ir_dir: Path) -> None:
    path = synthetic_ir_dir / "midas_small_fp32.xml"
    assert DepthEngine(path, input_size=(256, 192)).info.spec == MIDAS_V21_SMALL
    with pytest.raises(ModelError) as raised:
        DepthEngine(path, input_size=(250, 190))
    message = str(raised.value)
    assert message.startswith("model.input_size: 250x190 does not fit midas_small_fp32.xml (midas_v21_small): ")
    assert "multiples of 32" in message and "\n" not in message


def test_an_ir_converted_before_specs_were_stored_runs_as_midas(synthetic_ir_dir: Path, tmp_path: Path) -> None:
    """Older IRs carry only the model name in rt_info: every other spec fact reads back as MiDaS v2.1 small's."""
    xml = (synthetic_ir_dir / "midas_small_fp32.xml").read_text()
    new_keys = "|".join(key for key in SPEC_KEYS.values() if key != "model")
    older = re.sub(rf"\s*<({new_keys}) value=\"[^\"]*\" />", "", xml)
    assert "<long_side" not in older and '<model value="midas_v21_small" />' in older
    path = tmp_path / "midas_small_fp32.xml"
    path.write_text(older)
    shutil.copy(synthetic_ir_dir / "midas_small_fp32.bin", path.with_suffix(".bin"))
    engine = DepthEngine(path, hint="LATENCY")
    assert engine.info.spec == MIDAS_V21_SMALL and engine.info.name == "midas_v21_small"
    assert engine.infer(np.zeros((128, 256, 3), np.uint8)).shape == (128, 256)


def test_throughput_keeps_a_second_request_per_stream_and_latency_one(synthetic_ir_dir: Path) -> None:
    # A stream whose only request still waits for its callback (the GIL) would sit idle: THROUGHPUT gets two
    # requests per stream by default, LATENCY one, and a set number is taken as it is.
    path = synthetic_ir_dir / "midas_small_int8.xml"
    throughput = DepthEngine(path, hint="THROUGHPUT")
    streams = int(throughput.compile((256, 128)).get_property("NUM_STREAMS"))
    assert throughput.requests((256, 128)) == 2 * streams
    assert DepthEngine(path, hint="LATENCY").requests((256, 128)) == 1
    assert DepthEngine(path, hint="THROUGHPUT", infer_requests=3).requests((256, 128)) == 3


class _Discard:
    """A publisher that drops everything (nothing is started here)."""

    def publish(self, topic: str, payload: str | bytes, *, qos: int = 0, retain: bool = False) -> bool:
        return True

    def set_retained(self, topic: str, payload: str | bytes, qos: int = 1) -> None:
        pass


def test_the_daemon_keeps_opencv_work_on_its_own_threads(synthetic_ir_dir: Path) -> None:
    """Every OpenCV call per frame is on a small image, where OpenCV's own thread pool costs more than it saves
    and spins on the cores the model needs: building the daemon's stages turns the pool off."""
    cfg = Config.model_validate(
        {
            "model": {"path": str(synthetic_ir_dir / "midas_small_int8.xml"), "input_size": "256x128"},
            "cameras": [{"name": "clip", "source": str(FIXTURES / "video" / "solidWhiteRight.mp4")}],
        }
    )
    cv2.setNumThreads(2)
    try:
        stages = build_stages(cfg, _Discard())
        assert cv2.getNumThreads() == 1
        assert stages.requests >= 1
    finally:
        cv2.setNumThreads(-1)  # OpenCV's default again for the tests that follow
