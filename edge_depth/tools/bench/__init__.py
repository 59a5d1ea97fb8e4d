"""``edge-depth bench``: how fast the model runs alone, and how close the daemon comes to it.

For each IR (FP32, FP16 and INT8 of a model directory, or one ``--model``), at the input size the daemon
chooses for the clip (``auto_input_size``: 960x540 -> 256x128), in one run:

1. raw OpenVINO: LATENCY and THROUGHPUT hints with an ``AsyncInferQueue`` kept full, as ``benchmark_app``
   measures (FPS = completed requests / wall time; latency = each request's own);
2. the daemon's stages end to end, as ``edge_depth.stages.build_stages`` wires them for a config with cameras on
   the clip (``CameraReader``, ``FrameHub``, ``Resizer``, ``DepthEngine``, ``Pipeline``, ``CameraOutput`` with
   heatmaps for every 5th frame and alerts on every frame, ``MqttPublisher`` to a real Mosquitto): one and four
   cameras at maximum speed, one camera offered 15 FPS with the LATENCY hint, and a long one-camera run for
   memory, threads and open files; each pipeline run reports CPU ms per frame by stage (thread names from
   /proc), and its "own overhead": its CPU per frame minus raw THROUGHPUT's and decoding's of the same round;
3. decoding alone (the clip through the cameras' opener, nothing else), and the peers' loop (OpenVINO's MiDaS
   notebook / Open Model Zoo's monodepth demo: read, resize, synchronous inference, min-max, colour map, a JPEG
   every 5th frame) on the same IR and clip, in the same rounds as raw THROUGHPUT and the pipeline;
4. live cameras: 4, then 8 RTSP cameras (a 1280x720 25 FPS H.264 clip made with FFmpeg from the sample, served by
   the test suite's GStreamer server) with ``fps_limit: 10``: FPS per camera, CPU, latency, dropped and stale
   frames, and where the machine saturates (rows say why when GStreamer or FFmpeg is missing);
5. start-up: seconds from the daemon's process start to READY (sd_notify) and to its first heatmap, without a
   compiled-model cache and with a warm one;
6. PyTorch eager MiDaS small on the same frames, 2 threads (when torch is installed).

Every measurement runs in a fresh child process (``multiprocessing``, spawn), so that its CPU time, peak RSS,
threads and open files are its own and not those of earlier runs or of torch. Each one warms up first, then
measures; the table shows medians of the repetitions. Raw THROUGHPUT and the max-speed pipeline runs alternate
in rounds and their ratio is taken per round, because other load on a shared machine drifts over minutes;
CPU ms per frame (process CPU time / frames) is the figure that such load barely moves. Latency of the
pipeline is from the moment a frame is decoded to the moment its messages are handed to the MQTT client
(after heatmap and alerts).

Modules: ``common`` (plan, constants, error), ``jobs`` (the measurements, in child processes), ``results`` (what
they return), ``procfs`` (process and per-thread figures), ``live`` (the RTSP clip and server), ``runner`` (their
order), ``report`` (rows, targets, table, JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from edge_depth.tools.bench.common import DEFAULT_CLIP, DEFAULT_JSON, PRECISIONS, BenchError, Plan, say
from edge_depth.tools.bench.report import format_table, json_default, machine_info, payload
from edge_depth.tools.bench.runner import Bench
from edge_depth.tools.mosquitto import MosquittoError, find_mosquitto, private_broker

__all__ = ["BenchError", "build_parser", "main"]

_MAX_CAMERAS = 32  # more cameras than a 2-core box decodes; a typo rather than a plan


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-depth bench", description=__doc__.splitlines()[0] if __doc__ else None)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", type=Path, help="one IR (.xml)")
    which.add_argument(
        "--models", type=Path, default=Path("models"), help="directory with midas_small_{fp32,fp16,int8}.xml"
    )
    parser.add_argument("--clip", type=Path, help="video file (default: the bundled sample clip)")
    parser.add_argument("--frames", type=_positive_int, help="frames per pipeline repetition")
    parser.add_argument("--seconds", type=_positive_float, help="seconds per raw / PyTorch repetition")
    parser.add_argument("--repeat", type=_positive_int, help="repetitions after warm-up (medians are reported)")
    parser.add_argument("--long-frames", type=_positive_int, help="frames of the memory run (default 20000)")
    parser.add_argument("--cameras", type=_camera_counts, default=(1, 4), help="camera counts at max speed, e.g. 1,4")
    parser.add_argument("--short", action="store_true", help="a few hundred frames per run (smoke test)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})")
    parser.add_argument("--mqtt-host", help="use this broker instead of a private Mosquitto")
    parser.add_argument("--mqtt-port", type=_positive_int, default=1883)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _camera_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,4, got {text!r}") from None
    if not counts or counts[0] < 1 or counts[-1] > _MAX_CAMERAS:
        raise argparse.ArgumentTypeError(f"camera counts must be 1..32, got {text!r}")
    return counts


def _models(args: argparse.Namespace) -> dict[str, Path]:
    """Precision -> IR: the one ``--model``, or those of ``--models`` that exist."""
    if args.model is not None:
        if not args.model.is_file():
            raise BenchError(f"{args.model}: model file not found")
        return {_precision_of(args.model): args.model}
    directory: Path = args.models
    if not directory.is_dir():
        raise BenchError(f"{directory}: model directory not found (make one with `edge-depth convert`)")
    found = {p: directory / f"midas_small_{p}.xml" for p in PRECISIONS}
    found = {p: path for p, path in found.items() if path.is_file()}
    if not found:
        raise BenchError(
            f"{directory}: no midas_small_{{fp32,fp16,int8}}.xml in it (make them with `edge-depth convert`)"
        )
    return found


def _precision_of(path: Path) -> str:
    stem = path.stem
    return next((p for p in PRECISIONS if stem.endswith(p)), stem)


def _clip(args: argparse.Namespace) -> Path:
    clip: Path = args.clip or DEFAULT_CLIP
    if not clip.is_file():
        what = "the bundled sample clip" if args.clip is None else "video file"
        raise BenchError(f"{clip}: {what} not found")
    return clip


@contextmanager
def _broker(args: argparse.Namespace) -> Iterator[tuple[str, int]]:
    """(host, port) of ``--mqtt-host``, or of a private Mosquitto for the whole run."""
    if args.mqtt_host:
        yield args.mqtt_host, args.mqtt_port
        return
    if find_mosquitto() is None:
        raise BenchError("mosquitto not found (install it, or give a broker with --mqtt-host/--mqtt-port)")
    with ExitStack() as stack:
        try:
            address = stack.enter_context(private_broker())
        except MosquittoError as exc:
            raise BenchError(str(exc)) from None
        yield address


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        models = _models(args)
        clip = _clip(args)
        plan = Plan.make(
            short=bool(args.short),
            cameras=args.cameras,
            frames=args.frames,
            seconds=args.seconds,
            repeat=args.repeat,
            long_frames=args.long_frames,
        )
        machine = machine_info()
        started = time.monotonic()
        with _broker(args) as broker:
            results = Bench(models, clip, plan, broker).run()
    except BenchError as exc:
        print(f"edge-depth bench: error: {exc}", file=sys.stderr)
        return 2
    table = format_table(results, machine)
    print(table)
    result = payload(
        results,
        machine=machine,
        plan=plan,
        clip=clip,
        models=models,
        duration_s=time.monotonic() - started,
        table=table,
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=json_default) + "\n")
    say(f"wrote {args.json}")
    return 0
