"""Pure logic of the daemon's stages: input sizes, heatmap colour stability, result ordering, meters."""

from __future__ import annotations

import numpy as np
import pytest

from edge_depth.config.schema import HeatmapConfig
from edge_depth.frames import DepthFrame
from edge_depth.model.preprocess import Resizer, auto_input_size
from edge_depth.outputs.heatmap import HeatmapRenderer, SmoothedRange, output_size
from edge_depth.outputs.meters import LatencyWindow, RateMeter
from edge_depth.pipeline import Sequencer


@pytest.mark.parametrize(
    ("size", "expected"),
    [((640, 480), (256, 192)), ((960, 540), (256, 128)), ((480, 640), (192, 256)), ((256, 256), (256, 256))],
)
def test_auto_input_size_follows_the_official_small_transform(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert auto_input_size(*size) == expected


def test_resizer_outputs_model_size_bgr() -> None:
    frame = np.zeros((540, 960, 3), np.uint8)
    assert Resizer()(frame).shape == (128, 256, 3)
    assert Resizer((256, 192))(frame).shape == (192, 256, 3)


def test_heatmap_colours_are_stable_when_an_object_enters() -> None:
    """A near object must not repaint the whole scene, unlike per-frame min-max normalisation."""
    rng = np.random.default_rng(0)
    scene = np.tile(np.linspace(100, 400, 256, dtype=np.float32), (192, 1))
    smoothed = SmoothedRange(time_constant_s=10.0)
    for i in range(50):
        smoothed.update(scene + rng.normal(0, 2, scene.shape).astype(np.float32), i / 25)
    before = (smoothed.low, smoothed.high)
    with_object = scene.copy()
    with_object[50:150, 100:160] = 2000.0  # something very near
    low, high = smoothed.update(with_object, 50 / 25)
    assert abs(low - before[0]) < 5 and abs(high - before[1]) / before[1] < 0.05
    naive_high = float(with_object.max())
    assert naive_high > 4 * before[1]  # what min-max would have used


def test_heatmap_jpeg_has_configured_height_and_camera_aspect() -> None:
    renderer = HeatmapRenderer(HeatmapConfig(height=270))
    depth = np.random.default_rng(1).random((128, 256), dtype=np.float32)
    renderer.observe(depth, 0.0)
    assert renderer.render(depth, (960, 540)).shape == (270, 480, 3)
    assert output_size((640, 480), 270) == (360, 270)
    jpeg = renderer.jpeg(depth, (960, 540))
    assert jpeg[:2] == b"\xff\xd8"


def _result(camera: str, seq: int) -> DepthFrame:
    empty = np.zeros((1, 1), np.float32)
    return DepthFrame(camera, seq, 0.0, 0.0, np.zeros((1, 1, 3), np.uint8), empty, 1.0)


def test_sequencer_restores_submission_order_per_camera() -> None:
    seq = Sequencer()
    for n in (3, 7, 9):
        seq.submitted("a", n)
    seq.submitted("b", 1)
    assert seq.completed(_result("a", 7)) == []
    assert [r.seq for r in seq.completed(_result("b", 1))] == [1]
    assert [r.seq for r in seq.completed(_result("a", 3))] == [3, 7]
    assert [r.seq for r in seq.completed(_result("a", 9))] == [9]


def test_a_frame_that_never_ran_does_not_hold_back_its_camera() -> None:
    seq = Sequencer()
    for n in (1, 2, 3):
        seq.submitted("a", n)
    assert seq.completed(_result("a", 3)) == []
    assert seq.abandoned("a", 2) == []
    assert [r.seq for r in seq.completed(_result("a", 1))] == [1, 3]


def test_rate_meter_falls_to_zero_when_frames_stop() -> None:
    meter = RateMeter(window_s=5.0)
    for i in range(50):
        meter.tick(i * 0.04)
    assert meter.rate(now=2.0) == pytest.approx(25.0, rel=0.01)
    assert meter.rate(now=60.0) == 0.0


def test_latency_window_is_bounded() -> None:
    window = LatencyWindow(size=10)
    for v in range(1000):
        window.add(float(v))
    assert window.percentile(50) == pytest.approx(994.5)
