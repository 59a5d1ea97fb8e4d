"""``edge-depth bench --short`` on the session's INT8 IR, the bundled clip and a private Mosquitto: it runs,
prints every row and target, and writes the same as JSON. A smoke test: it never asserts speed."""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path
from typing import Any

import pytest

from edge_depth.tools import bench
from edge_depth.tools.bench.jobs import PipelineSpec, bench_config
from edge_depth.tools.bench.live import live_problem
from edge_depth.tools.bench.procfs import cpu_ms_per_frame, stage_of
from edge_depth.tools.bench.report import TARGET_PIPELINE_VS_RAW

LIVE_RUNS = ["4 RTSP cameras, 10 FPS each", "8 RTSP cameras, 10 FPS each"]
STARTUP_RUNS = ["start-up, no compiled-model cache", "start-up, warm compiled-model cache"]
EXPECTED_RUNS = [
    "OpenVINO alone, LATENCY",
    "OpenVINO alone, LATENCY, 15 FPS offered",
    "OpenVINO alone, THROUGHPUT",
    "decoding alone",
    "peers' loop",
    "pipeline, 1 camera",
    "pipeline, 1 camera + 1 MJPEG viewer",
    "pipeline, 4 cameras",
    "1 camera, 15 FPS offered, LATENCY",
    *LIVE_RUNS,
    *STARTUP_RUNS,
    "long run, 1 camera, 150 frames",
    "PyTorch eager, 2 threads",
]


def test_short_bench_prints_and_writes_every_row(
    int8_ir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results" / "bench.json"
    argv = ["--model", str(int8_ir), "--short", "--frames", "60", "--seconds", "0.5", "--long-frames", "150"]
    assert bench.main([*argv, "--json", str(out)]) == 0

    captured = capsys.readouterr()
    table = captured.out
    for run in EXPECTED_RUNS:
        assert run in table, f"row {run!r} missing from the table:\n{table}"
    steps = re.findall(r"^\[(\d+)/(\d+)\] ", captured.err, flags=re.MULTILINE)
    assert steps and steps[-1][0] == steps[-1][1], f"no progress to the last step on stderr:\n{captured.err}"

    result = json.loads(out.read_text())
    assert result["input_size"] == "256x128"  # the clip is 960x540: the daemon's auto size
    rows = {row["run"]: row for row in result["rows"]}
    assert sorted(rows) == sorted(EXPECTED_RUNS)
    for run in STARTUP_RUNS:  # no frame figures: the note says how long the start took
        assert re.search(r"READY \d+\.\d+ s, first heatmap \d+\.\d+ s", rows.pop(run)["note"]), run
    problem = live_problem()
    for run in LIVE_RUNS:
        if problem is not None:  # without GStreamer the rows say why, and the target is a MISS
            assert rows.pop(run)["note"] == f"not run: {problem}"
        else:
            assert re.search(r"per camera [\d.]+\.\.[\d.]+ FPS; dropped \d+, stale \d+", rows[run]["note"]), run
    for run, row in rows.items():
        assert row["fps"] > 0, run
        assert row["peak_rss_mb"] > 50, run  # a Python process with numpy and OpenCV is never smaller
        assert 0 < row["cpu_pct"] <= 100, run
        assert row["p50_ms"] > 0 and row["p95_ms"] >= row["p50_ms"], run
    _check_rounds(result, rows)
    assert re.search(r"inference in the pipeline p50 \d+\.\d ms", rows["1 camera, 15 FPS offered, LATENCY"]["note"])
    # One request at a camera's pace: started 15 times a second, never faster, and compared with back to back.
    paced = rows["OpenVINO alone, LATENCY, 15 FPS offered"]
    assert 10 < paced["fps"] <= 15.5 and re.search(r"\d\.\d\d x back to back", paced["note"]), paced
    assert result["details"]["raw"]["int8"]["LATENCY_PACED"]["requests"] == 1
    latency_target = next(t for t in result["targets"] if "p50 at 15 FPS" in t["name"])
    assert re.search(r"OpenVINO alone at this pace: \d\.\d\d\)", latency_target["figure"]), latency_target
    pipeline = result["details"]["pipeline"]["int8"]
    assert set(pipeline["4"]["per_camera_fps"]) == {"cam0", "cam1", "cam2", "cam3"}
    assert all(fps > 0 for fps in pipeline["4"]["per_camera_fps"].values())
    assert 2 <= pipeline["1"]["frames_per_heatmap"] <= 20  # heatmaps flow at about every 5th frame
    memory = result["details"]["long_run"]["memory"]
    assert memory["rss_start_mb"] > 0 and memory["threads_start"] > 1 and memory["fds_start"] > 2

    targets = {t["name"] for t in result["targets"]}
    assert any(f"1 camera >= {TARGET_PIPELINE_VS_RAW} x raw THROUGHPUT" in t for t in targets)
    vs_raw = next(
        t for t in result["targets"] if t["name"].endswith(f"1 camera >= {TARGET_PIPELINE_VS_RAW} x raw THROUGHPUT")
    )
    # The figure says how far decoding on the same cores lets the pipeline come at most.
    ceiling = re.search(r"at most (\d\.\d\d) with decoding on these cores", vs_raw["figure"])
    assert ceiling and 0 < float(ceiling.group(1)) < 1, vs_raw
    assert any("own overhead <= 1 ms CPU per frame" in t for t in targets)
    assert any("x the peers' loop" in t for t in targets)
    assert any("4 RTSP cameras at 10 FPS each" in t for t in targets)
    assert any("start to READY <= 2 s with a warm cache" in t for t in targets)
    assert any("4 cameras, none below 0.8 x mean" in t for t in targets)
    assert any("PyTorch eager" in t for t in targets)
    assert any("peak RSS" in t for t in targets)
    for target in result["targets"]:
        assert ("PASS" if target["passed"] else "MISS") + "  " + target["name"] in table


def _check_rounds(result: dict[str, Any], rows: dict[str, dict[str, Any]]) -> None:
    """The figures that pair each pipeline run with the raw, decoding and peers' runs of its round."""
    details = result["details"]
    pipeline = details["pipeline"]["int8"]
    raw_rounds = details["raw"]["int8"]["THROUGHPUT"]["rounds"]
    decode_rounds, peers_rounds = details["decode"]["int8"]["rounds"], details["peers"]["int8"]["rounds"]
    for cameras in ("1", "4"):
        # Each round pairs a raw THROUGHPUT run, decoding alone and the peers' loop with the pipeline runs right
        # after them: the ratios and the pipeline's own overhead are per round.
        rounds = pipeline[cameras]["rounds"]
        assert len(rounds) == len(raw_rounds) == len(decode_rounds) == len(peers_rounds) == 2
        for raw, dec, peers, pipe in zip(raw_rounds, decode_rounds, peers_rounds, rounds, strict=True):
            assert math.isclose(pipe["vs_raw"], pipe["fps"] / raw["fps"], rel_tol=1e-9)
            assert math.isclose(pipe["vs_peers"], pipe["fps"] / peers["fps"], rel_tol=1e-9)
            own = [cpu_ms_per_frame(r["cpu_pct"], r["fps"]) for r in (pipe, raw, dec)]
            assert math.isclose(pipe["own_ms"], own[0] - own[1] - own[2], rel_tol=1e-9)
        run = f"pipeline, {cameras} camera{'s' if cameras != '1' else ''}"
        assert math.isclose(rows[run]["vs_raw"], statistics.median(p["vs_raw"] for p in rounds), rel_tol=1e-9)
        assert math.isclose(rows[run]["own_ms"], statistics.median(p["own_ms"] for p in rounds), rel_tol=1e-9)
        # Per-stage CPU: the pipeline's own threads by name, OpenVINO's and the decoder's as native ones
        assert {"dispatch", "outputs", "capture-io"} <= set(pipeline[cameras]["thread_ms"]), run


def test_missing_model_directory_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-models"
    assert bench.main(["--models", str(missing), "--short"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"edge-depth bench: error: {missing}: model directory not found (make one with `edge-depth convert`)"


def test_directory_without_irs_names_the_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--models", str(tmp_path), "--short"]) == 2
    err = capsys.readouterr().err.strip()
    assert str(tmp_path) in err and "midas_small_{fp32,fp16,int8}.xml" in err and "\n" not in err


def test_missing_clip_is_named(int8_ir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = tmp_path / "nope.mp4"
    assert bench.main(["--model", str(int8_ir), "--clip", str(clip), "--short"]) == 2
    assert capsys.readouterr().err.strip() == f"edge-depth bench: error: {clip}: video file not found"


def test_pipeline_runs_use_the_daemons_config(sample_clip: Path, tmp_path: Path) -> None:
    """The pipeline job builds a real daemon ``Config`` (then ``build_stages``): cameras on the clip, the bench's
    broker and alerts, the raw runs' input size, no Home Assistant discovery."""
    spec = PipelineSpec(
        model=str(tmp_path / "midas_small_int8.xml"),
        clip=str(sample_clip),
        input_size=(256, 128),
        cameras=4,
        hint="LATENCY",
        realtime=True,
        fps_limit=15.0,
        heatmap_hz=3.0,
        warmup_frames=10,
        frames=20,
        repeat=1,
        mqtt_host="127.0.0.1",
        mqtt_port=1884,
    )
    cfg = bench_config(spec, client_id="bench-test")
    assert [cam.name for cam in cfg.cameras] == ["cam0", "cam1", "cam2", "cam3"]
    assert {str(cam.source) for cam in cfg.cameras} == {str(sample_clip)}
    assert all(cam.loop and cam.realtime and cam.fps_limit == 15.0 for cam in cfg.cameras)
    assert all(cam.heatmap.rate_hz == 3.0 and len(cam.alerts.zones) == 2 for cam in cfg.cameras)
    assert cfg.model.fixed_input_size() == (256, 128) and cfg.model.performance_hint == "LATENCY"
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.client_id) == ("127.0.0.1", 1884, "bench-test")
    assert not cfg.homeassistant.enabled


def test_stages_add_up_the_threads_of_every_camera() -> None:
    assert stage_of("capture-cam3-io12") == "capture-io"
    assert stage_of("capture-cam12") == "capture"
    assert stage_of("dispatch") == "dispatch"
    assert stage_of("outputs") == "outputs"
