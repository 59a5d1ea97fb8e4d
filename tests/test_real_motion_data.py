"""The real-motion data step: GMDCSA24 clips become MiDaS-like depth recordings (tests/support/real_motion.py).

Only the conversion is tested here, not what the fall detector makes of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_depth.capture.replay import Recording, save_recording
from tests.support.real_motion import (
    FALLS,
    Clip,
    RealMotion,
    clips,
    convert,
    load_labels,
    parse_classes,
    recording_frames,
    room_inverse,
)

CLIPS = clips()


@pytest.fixture(scope="module")
def converted() -> dict[str, RealMotion]:
    return {clip.clip_id: convert(clip) for clip in CLIPS}


def test_the_fixtures_hold_11_falls_and_8_daily_activities_with_labels() -> None:
    assert [c.label.label for c in CLIPS].count("fall") == 11
    assert [c.label.label for c in CLIPS].count("adl") == 8
    assert (FALLS / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    assert all(c.label.fall_interval is not None for c in CLIPS if c.label.label == "fall")
    assert all(c.label.fall_interval is None for c in CLIPS if c.label.label == "adl")


def test_label_classes_parse_despite_the_datasets_typos() -> None:
    assert parse_classes("Falling (SW)[3.4 to 6]; Sitting[0 to 3.4]") == {
        "Falling (SW)": ((3.4, 6.0),),
        "Sitting": ((0.0, 3.4),),
    }
    assert parse_classes("Falling (BW[5.9 to 10]; Walking[0 to 1.3]")["Falling (BW)"] == ((5.9, 10.0),)
    assert parse_classes("Eating[0.9 4.6]")["Eating"] == ((0.9, 4.6),)
    assert parse_classes("Standing[0 to 0.5; 4.2 to 6.5]")["Standing"] == ((0.0, 0.5), (4.2, 6.5))
    assert parse_classes("Falling (SW) [ 2.8 to 6]")["Falling (SW)"] == ((2.8, 6.0),)
    labels = load_labels()
    assert labels["subject3/fall/01"].fall_interval == (0.0, 3.0)  # "Fall (FW)[0 to 3]"
    assert labels["subject2/fall/12"].fall_interval == (6.9, 12.0)


@pytest.mark.parametrize("clip", CLIPS, ids=[c.clip_id for c in CLIPS])
def test_every_clip_converts_at_the_models_size_and_the_clips_rate(
    clip: Clip, converted: dict[str, RealMotion], tmp_path: Path
) -> None:
    motion = converted[clip.clip_id]
    n = len(motion.depth)
    assert n >= 80
    assert motion.depth.dtype == np.float32 and np.isfinite(motion.depth).all()
    assert motion.depth.shape[1:] in ((192, 256), (128, 256))  # 4:3 and 16:9 clips, as auto_input_size
    assert motion.images.shape == (*motion.depth.shape, 3) and motion.images.dtype == np.uint8
    assert 14.9 <= motion.fps <= 30.1
    # Someone is in view in a good part of the clip. Not in all: where a person lies still for most of a clip
    # that has no peer of the same view (subject1/fall/13), the background median keeps them.
    assert motion.masks.any(axis=(1, 2)).mean() > 0.4

    frames = list(recording_frames(motion, lead_s=2.0))
    lead = round(2.0 * motion.fps)
    assert len(frames) == n + lead
    assert np.array_equal(frames[lead].depth, motion.depth[0]) and frames[lead].seq == lead + 1
    path = tmp_path / "clip.npz"
    assert save_recording(path, frames[lead - 5 : lead + 5]) == 10  # a slice: the format, not the compressor
    recording = Recording(path)
    assert recording.shape == motion.depth.shape[1:]
    assert recording.duration_s == pytest.approx(9 / motion.fps)


def test_conversion_is_deterministic(converted: dict[str, RealMotion]) -> None:
    clip = CLIPS[0]
    again = convert(clip)
    assert np.array_equal(again.depth, converted[clip.clip_id].depth)
    assert not np.array_equal(convert(clip, seed=1).depth, again.depth)


@pytest.mark.parametrize("clip", CLIPS, ids=[c.clip_id for c in CLIPS])
def test_the_person_is_nearer_than_the_floor_at_their_feet(clip: Clip, converted: dict[str, RealMotion]) -> None:
    motion = converted[clip.clip_id]
    room = room_inverse(*motion.depth.shape[1:])
    checked = 0
    for truth, mask in zip(motion.truth, motion.masks, strict=True):
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            continue
        feet = rows[-1]
        assert truth[mask].min() > room[feet, mask[feet]].min()  # every person pixel nearer than the floor there
        checked += 1
    assert checked > 0


@pytest.mark.parametrize("clip", [c for c in CLIPS if c.label.label == "fall"], ids=lambda c: c.clip_id)
def test_the_silhouettes_top_drops_during_the_labelled_fall(clip: Clip, converted: dict[str, RealMotion]) -> None:
    motion = converted[clip.clip_id]
    interval = clip.label.fall_interval
    assert interval is not None
    start, end = interval
    times = motion.times
    tops = [(t, b.top) for t, b in zip(times, motion.boxes, strict=True) if b is not None]
    before = [top for t, top in tops if t <= start + 0.5]
    during = [top for t, top in tops if start <= t <= end]
    assert before and during
    assert max(during) - min(before) >= 0.15  # image heights
