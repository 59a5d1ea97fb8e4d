"""Pure logic of the daemon's stages: input sizes, heatmap colour stability, result ordering, meters."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from edge_depth.config import HeatmapConfig
from edge_depth.depthstats import grid_stats
from edge_depth.frames import DepthFrame, Frame
from edge_depth.model.contract import MIDAS_V21_SMALL
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
    assert Resizer(fixed_size=(256, 192))(frame).shape == (192, 256, 3)


def test_input_size_and_filter_come_from_the_model_spec() -> None:
    """Long side, multiple and filter are facts of the model: a ViT-style spec (518, multiples of 14)."""
    vit = replace(MIDAS_V21_SMALL, name="vit_like", long_side=518, multiple=14, resize_filter="bilinear")
    # 960x540: 540 * 518 / 960 = 291.4 -> 20.8 multiples of 14 -> 21 -> 294
    assert auto_input_size(960, 540, vit) == (518, 294)
    assert auto_input_size(640, 480, vit) == (518, 392)  # 388.5 / 14 = 27.75 -> 28
    assert auto_input_size(960, 540, MIDAS_V21_SMALL) == auto_input_size(960, 540) == (256, 128)
    frame = np.random.default_rng(2).integers(0, 256, (540, 960, 3), np.uint8)
    resized = Resizer(vit)(frame)
    assert resized.shape == (294, 518, 3)
    assert (resized == cv2.resize(frame, (518, 294), interpolation=cv2.INTER_LINEAR)).all()
    assert (Resizer()(frame) == cv2.resize(frame, (256, 128), interpolation=cv2.INTER_CUBIC)).all()


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


def test_heatmap_range_from_the_callers_grid_stats_is_the_same() -> None:
    rng = np.random.default_rng(6)
    own, shared = SmoothedRange(time_constant_s=2.0), SmoothedRange(time_constant_s=2.0)
    for i in range(20):
        depth = rng.normal(300, 50, (128, 256)).astype(np.float32)
        depth[rng.random(depth.shape) < i / 40] = np.nan
        assert own.update(depth, i / 25) == shared.update(depth, i / 25, grid_stats(depth))


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


def test_arrays_that_cross_stages_are_read_only() -> None:
    image = np.zeros((4, 6, 3), np.uint8)
    frame = Frame(camera="a", seq=1, captured_mono=0.0, captured_wall=0.0, image=image, source_size=(6, 4))
    result = DepthFrame(
        camera="a",
        seq=1,
        captured_mono=0.0,
        captured_wall=0.0,
        image=frame.image,
        depth=np.ones((4, 6), np.float32),
        infer_ms=1.0,
    )
    for array in (frame.image, result.depth):
        with pytest.raises(ValueError, match="read-only"):
            array[0, 0] = 1
