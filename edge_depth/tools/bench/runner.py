"""The order of the measurements: per IR, raw LATENCY, then rounds of raw THROUGHPUT, decoding alone, the peers'
loop and the pipeline, then the latency run; then live RTSP cameras, start-up, the long run and PyTorch. Each
measurement is a job in a child process; rows are added as they finish."""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from edge_depth.tools.bench.common import (
    HEATMAP_EVERY,
    LIVE_CAMERAS,
    LIVE_FPS_LIMIT,
    OFFERED_FPS,
    TORCH_THREADS,
    BenchError,
    Plan,
    say,
)
from edge_depth.tools.bench.jobs import (
    LoopSpec,
    PipelineSpec,
    RawSpec,
    StartupSpec,
    TorchSpec,
    clip_size,
    decode_job,
    peers_job,
    pipeline_job,
    raw_job,
    run_in_child,
    startup_job,
    torch_job,
)
from edge_depth.tools.bench.live import LIVE_SIZE, live_problem, make_live_clip, rtsp_server
from edge_depth.tools.bench.procfs import cpu_ms_per_frame
from edge_depth.tools.bench.report import (
    Details,
    Figures,
    LiveRun,
    LongRun,
    RawSet,
    Results,
    Row,
    Target,
    evaluate_targets,
    fmt,
)
from edge_depth.tools.bench.results import (
    LoopResult,
    PipelineResult,
    RawResult,
    combine_loop,
    combine_pipeline,
    combine_raw,
)

_MAX_HEATMAP_HZ = 30.0  # the config's bound of heatmap.rate_hz
MJPEG_COST_PCT = 2.0  # what a console viewer may cost the pipeline
_MIN_HEATMAP_HZ = 0.2
# The pipeline's speed over raw THROUGHPUT assumed in a first round, before one was measured (for heatmap rates).
_FIRST_ROUND_VS_RAW = 0.7


class Bench:
    """Runs every measurement in order, printing progress to stderr, and collects the table."""

    def __init__(self, models: dict[str, Path], clip: Path, plan: Plan, broker: tuple[str, int]) -> None:
        from edge_depth.model.preprocess import auto_input_size

        self.models = models
        self.clip = str(clip)
        self.plan = plan
        self.broker = broker
        self.size = auto_input_size(*clip_size(self.clip))
        self.results = Results(input_size="{}x{}".format(*self.size))
        self._step = 0
        self._steps = self._count_steps()

    @property
    def details(self) -> Details:
        return self.results.details

    def _count_steps(self) -> int:
        mjpeg = 1 if 1 in self.plan.cameras else 0  # the 1-camera run again, with an MJPEG viewer
        per_model = 2 + self.plan.repeat * (3 + len(self.plan.cameras) + mjpeg) + 1
        fp32_forced = 1 if "fp32" in self.models else 0
        # + live cameras, start-up without and with a cache, the long run, torch
        return per_model * len(self.models) + fp32_forced + len(LIVE_CAMERAS) + 2 + 1 + 1

    def _progress(self, what: str) -> None:
        self._step += 1
        say(f"[{self._step}/{self._steps}] {what} ...")

    def run(self) -> Results:
        for precision, path in self.models.items():
            latency, forced, paced = self._raw(precision, path)
            throughput = self._throughput_rounds(precision, path, forced)
            self.details.raw[precision] = RawSet(latency, throughput, forced, paced)
            self._latency(precision, path, latency)
        long_precision = "int8" if "int8" in self.models else next(iter(self.models))
        self._live(long_precision, self.models[long_precision])
        self._startup(long_precision, self.models[long_precision])
        self._long_run(long_precision, self.models[long_precision], self.details.raw[long_precision].throughput)
        self._torch()
        self.results.targets.extend(evaluate_targets(self.details, self.plan, list(self.models)))
        return self.results

    def _row(
        self,
        precision: str,
        run: str,
        r: Figures,
        *,
        vs_raw: float | None = None,
        own_ms: float | None = None,
        note: str = "",
        input_size: str | None = None,
    ) -> None:
        size = input_size or self.results.input_size
        self.results.rows.append(Row.of(precision, size, run, r, vs_raw=vs_raw, own_ms=own_ms, note=note))

    @staticmethod
    def _show(r: RawResult | PipelineResult | LoopResult) -> None:
        say(f"    {r.fps:.1f} FPS, p50 {fmt(r.p50_ms)} ms, p95 {fmt(r.p95_ms)} ms, CPU {fmt(r.cpu_pct)} %")

    def _raw_child(self, spec: RawSpec) -> RawResult:
        r = run_in_child(raw_job, spec, timeout=self._raw_timeout())
        self._show(r)
        return r

    def _pipeline_child(self, spec: PipelineSpec) -> PipelineResult:
        r = run_in_child(pipeline_job, spec, timeout=self._pipe_timeout(spec))
        self._show(r)
        return r

    def _raw(self, precision: str, path: Path) -> tuple[RawResult, RawResult | None, RawResult]:
        """The LATENCY hint, back to back and at a camera's pace (THROUGHPUT comes with the pipeline, in rounds);
        real f32 for a BF16-run FP32 IR."""
        self._progress(f"{precision} {self.results.input_size}: OpenVINO alone, LATENCY hint")
        latency = self._raw_child(self._raw_spec(path, "LATENCY"))
        self._row(precision, "OpenVINO alone, LATENCY", latency, note=latency.note)
        self._progress(f"{precision} {self.results.input_size}: OpenVINO alone, LATENCY, {OFFERED_FPS:g} FPS offered")
        paced = self._raw_child(self._raw_spec(path, "LATENCY", paced_fps=OFFERED_FPS))
        slower = paced.p50_ms / latency.p50_ms
        note = f"one request every 1/{OFFERED_FPS:g} s, cores idle between: {slower:.2f} x back to back"
        self._row(precision, f"OpenVINO alone, LATENCY, {OFFERED_FPS:g} FPS offered", paced, note=note)
        forced = None
        if precision == "fp32" and latency.inference_precision != "f32":
            # CPUs with BF16 (AVX512_BF16, AMX) run an FP32 IR in BF16 unless told otherwise: show real FP32 too.
            self._progress(f"{precision} {self.results.input_size}: OpenVINO alone, THROUGHPUT, f32 forced")
            forced = self._raw_child(self._raw_spec(path, "THROUGHPUT", precision="f32"))
        return latency, forced, paced

    def _throughput_rounds(self, precision: str, path: Path, forced: RawResult | None) -> RawResult:
        """Raw THROUGHPUT and the pipeline in alternation, one repetition of each per round.

        Other processes load a shared machine differently from minute to minute: measured side by side and
        paired per round, the pipeline/raw ratio holds where the FPS figures alone would drift.
        """
        raw_rounds: list[RawResult] = []
        decode_rounds: list[LoopResult] = []
        peers_rounds: list[LoopResult] = []
        pipe_rounds: dict[int, list[PipelineResult]] = {n: [] for n in self.plan.cameras}
        mjpeg_rounds: list[PipelineResult] = []
        size = self.results.input_size
        for k in range(1, self.plan.repeat + 1):
            self._progress(f"{precision} {size}: round {k}/{self.plan.repeat}, OpenVINO alone, THROUGHPUT hint")
            r = self._raw_child(self._raw_spec(path, "THROUGHPUT", repeat=1))
            raw_rounds.append(r)
            self._progress(f"{precision} {size}: round {k}/{self.plan.repeat}, decoding alone")
            d = self._loop_child(decode_job, LoopSpec(self.clip, self.plan.frames, 1))
            decode_rounds.append(d)
            self._progress(f"{precision} {size}: round {k}/{self.plan.repeat}, the peers' loop")
            peers = self._loop_child(peers_job, LoopSpec(self.clip, self.plan.frames, 1, str(path), self.size))
            peers_rounds.append(peers)
            # The model's and the decoder's CPU per frame in this round: what the pipeline adds is its own.
            base_ms = cpu_ms_per_frame(r.cpu_pct, r.fps) + cpu_ms_per_frame(d.cpu_pct, d.fps)
            heatmap_hz: dict[int, float] = {}
            for n in self.plan.cameras:
                label = f"pipeline, {n} camera{'s' if n > 1 else ''}"
                self._progress(f"{precision} {size}: round {k}/{self.plan.repeat}, {label}, max speed")
                # Every 5th frame as in the peers' loop, at the speed the pipeline had in the previous round.
                expected = pipe_rounds[n][-1].fps if pipe_rounds[n] else r.fps * _FIRST_ROUND_VS_RAW
                heatmap_hz[n] = self._heatmap_hz(expected, n)
                spec = self._spec(path, n, heatmap_hz=heatmap_hz[n])
                p = self._pipeline_child(spec)
                own = cpu_ms_per_frame(p.cpu_pct, p.fps) - base_ms
                pipe_rounds[n].append(replace(p, vs_raw=p.fps / r.fps, own_ms=own, vs_peers=p.fps / peers.fps))
            if 1 in self.plan.cameras:
                self._progress(f"{precision} {size}: round {k}/{self.plan.repeat}, pipeline, 1 camera + MJPEG viewer")
                spec = replace(self._spec(path, 1, heatmap_hz=heatmap_hz[1]), mjpeg_clients=1)
                v = self._pipeline_child(spec)
                # Paired with this round's plain 1-camera run: the viewer's cost as a fraction of its FPS.
                mjpeg_rounds.append(replace(v, vs_raw=v.fps / r.fps, vs_peers=v.fps / pipe_rounds[1][-1].fps))
        return self._throughput_rows(
            precision, forced, raw_rounds, decode_rounds, peers_rounds, pipe_rounds, mjpeg_rounds
        )

    def _throughput_rows(
        self,
        precision: str,
        forced: RawResult | None,
        raw_rounds: list[RawResult],
        decode_rounds: list[LoopResult],
        peers_rounds: list[LoopResult],
        pipe_rounds: dict[int, list[PipelineResult]],
        mjpeg_rounds: list[PipelineResult],
    ) -> RawResult:
        """The rows of the rounds (medians of their runs); returns raw THROUGHPUT's."""
        throughput = combine_raw(raw_rounds)
        self._row(precision, "OpenVINO alone, THROUGHPUT", throughput, note=throughput.note)
        if forced is not None:
            self._row(precision, "OpenVINO alone, THROUGHPUT, f32 forced", forced, note=forced.note)
        decode, peers_loop = combine_loop(decode_rounds), combine_loop(peers_rounds)
        self._row(precision, "decoding alone", decode, note="the clip through the cameras' opener, nothing else")
        note = f"read, resize, sync infer, min-max, colour map; JPEG every {HEATMAP_EVERY}th frame"
        self._row(precision, "peers' loop", peers_loop, note=note)
        self.details.decode[precision] = decode
        self.details.peers[precision] = peers_loop
        for n, rounds in pipe_rounds.items():
            p = combine_pipeline(rounds)
            note = f"heatmap every {fmt(p.frames_per_heatmap)} frames; {fmt(p.vs_peers, 2)} x peers' loop"
            if n > 1:
                note += f"; min/mean camera {p.fairness:.2f}"
            note += "; CPU ms/frame: " + _stages(p)
            run = f"pipeline, {n} camera{'s' if n > 1 else ''}"
            self._row(precision, run, p, vs_raw=p.vs_raw, own_ms=p.own_ms, note=note)
            self.details.pipeline.setdefault(precision, {})[n] = p
        if mjpeg_rounds:
            self._mjpeg_row(precision, combine_pipeline(mjpeg_rounds))
        return throughput

    def _mjpeg_row(self, precision: str, v: PipelineResult) -> None:
        """The 1-camera pipeline with one viewer on the console's MJPEG stream; ``vs_peers`` holds its FPS over the
        plain 1-camera run of the same round (median of rounds)."""
        ratio = v.vs_peers or 0.0
        note = f"{ratio:.3f} x the 1-camera pipeline, paired rounds; heatmap every {fmt(v.frames_per_heatmap)} frames"
        self._row(precision, "pipeline, 1 camera + 1 MJPEG viewer", v, vs_raw=v.vs_raw, note=note)
        cost = 100.0 * (1.0 - ratio)
        name = f"{precision}: one MJPEG viewer costs <= {MJPEG_COST_PCT:g} % of the 1-camera pipeline's FPS"
        self.results.targets.append(Target(name, f"{cost:+.1f} %", cost <= MJPEG_COST_PCT))

    def _loop_child(self, job: Callable[[LoopSpec], LoopResult], spec: LoopSpec) -> LoopResult:
        r = run_in_child(job, spec, timeout=120.0 + spec.frames * (spec.repeat + 1) / 5.0)
        self._show(r)
        return r

    def _raw_spec(
        self,
        path: Path,
        hint: str,
        precision: str | None = None,
        repeat: int | None = None,
        paced_fps: float | None = None,
    ) -> RawSpec:
        reps = repeat or self.plan.repeat
        return RawSpec(str(path), self.clip, self.size, hint, self.plan.seconds, reps, precision, paced_fps)

    def _raw_timeout(self) -> float:
        return 120.0 + self.plan.seconds * (self.plan.repeat + 1) * 2

    def _spec(
        self,
        path: Path,
        cameras: int,
        *,
        heatmap_hz: float,
        hint: str = "THROUGHPUT",
        realtime: bool = False,
        fps_limit: float | None = None,
        warmup_frames: int | None = None,
        frames: int | None = None,
    ) -> PipelineSpec:
        """A pipeline run of one repetition (rounds repeat it); by default at maximum speed (THROUGHPUT hint, files
        read as fast as they are taken)."""
        return PipelineSpec(
            model=str(path),
            clip=self.clip,
            input_size=self.size,
            cameras=cameras,
            hint=hint,
            realtime=realtime,
            fps_limit=fps_limit,
            heatmap_hz=heatmap_hz,
            warmup_frames=self.plan.warmup_frames * cameras if warmup_frames is None else warmup_frames,
            frames=self.plan.frames if frames is None else frames,
            repeat=1,
            mqtt_host=self.broker[0],
            mqtt_port=self.broker[1],
        )

    @staticmethod
    def _heatmap_hz(fps: float, cameras: int) -> float:
        # CameraOutput publishes heatmaps at a rate, not every n-th frame: set the rate from the speed expected.
        return float(min(_MAX_HEATMAP_HZ, max(_MIN_HEATMAP_HZ, fps / cameras / HEATMAP_EVERY)))

    @staticmethod
    def _pipe_timeout(spec: PipelineSpec) -> float:
        frames = spec.warmup_frames + spec.frames * spec.repeat
        return 120.0 + frames / 5.0  # even at 5 FPS it finishes

    def _latency(self, precision: str, path: Path, single: RawResult) -> None:
        self._progress(f"{precision} {self.results.input_size}: 1 camera offered {OFFERED_FPS:g} FPS, LATENCY hint")
        spec = self._spec(
            path,
            1,
            hint="LATENCY",
            realtime=True,
            fps_limit=OFFERED_FPS,
            heatmap_hz=OFFERED_FPS / HEATMAP_EVERY,
            warmup_frames=min(self.plan.warmup_frames, 25),
            frames=self.plan.latency_frames,
        )
        r = self._pipeline_child(spec)
        r = replace(r, vs_single_inference=r.p50_ms / single.p50_ms)
        note = f"p50 = {r.vs_single_inference:.2f} x single inference ({single.p50_ms:.1f} ms)"
        # Requests here start on idle threads, not on a full queue: how long they take tells what is left to cut.
        note += f"; inference in the pipeline p50 {fmt(r.infer_p50_ms)} ms"
        self._row(precision, f"1 camera, {OFFERED_FPS:g} FPS offered, LATENCY", r, note=note)
        self.details.latency[precision] = r

    def _live(self, precision: str, path: Path) -> None:
        """Live RTSP cameras (1280x720, 25 FPS, H.264) with ``fps_limit`` each: whether every camera gets its
        frames, and where the machine saturates. Without GStreamer or FFmpeg the rows say why."""
        w, h = LIVE_SIZE
        size = f"{w}x{h}"
        problem = live_problem()
        label = {n: f"{n} RTSP cameras, {LIVE_FPS_LIMIT:g} FPS each" for n in LIVE_CAMERAS}
        if problem is not None:
            for n in LIVE_CAMERAS:
                self._progress(f"{precision} {size}: {label[n]}")
                say(f"    not run: {problem}")
                self.details.live[n] = LiveRun(None, problem)
                self.results.rows.append(Row.missing(precision, size, label[n], f"not run: {problem}"))
            return
        from edge_depth.model.preprocess import auto_input_size

        live_input = auto_input_size(w, h)
        with tempfile.TemporaryDirectory(prefix="edge-depth-bench-live-") as tmp:
            frames = {n: self._live_frames(n) for n in LIVE_CAMERAS}
            seconds = max((warm + count) / (n * LIVE_FPS_LIMIT) for n, (warm, count) in frames.items())
            try:
                clip = make_live_clip(Path(self.clip), Path(tmp), seconds * 2 + 60)
                with rtsp_server(clip) as url:
                    for n in LIVE_CAMERAS:
                        self._progress(f"{precision} {size}: {label[n]}")
                        warm, count = frames[n]
                        spec = replace(
                            self._spec(path, n, heatmap_hz=LIVE_FPS_LIMIT / HEATMAP_EVERY),
                            input_size=live_input,
                            fps_limit=LIVE_FPS_LIMIT,
                            warmup_frames=warm,
                            frames=count,
                            sources=(url,) * n,
                        )
                        r = self._pipeline_child(spec)
                        self.details.live[n] = LiveRun(r, None)
                        self._row(precision, label[n], r, note=self._live_note(r, n), input_size=_size(live_input))
            except BenchError as exc:
                for n in LIVE_CAMERAS:
                    if n not in self.details.live:
                        self.details.live[n] = LiveRun(None, str(exc))
                        self.results.rows.append(Row.missing(precision, size, label[n], f"failed: {exc}"))

    def _live_frames(self, cameras: int) -> tuple[int, int]:
        """(warm-up, measured) frames of a live run: a few seconds of warm-up, then the plan's frames."""
        warm = max(self.plan.warmup_frames, int(3 * LIVE_FPS_LIMIT)) * cameras // 2
        return warm, max(self.plan.frames, int(5 * LIVE_FPS_LIMIT * cameras))

    @staticmethod
    def _live_note(r: PipelineResult, cameras: int) -> str:
        rates = sorted(r.per_camera_fps.values())
        per_camera_pct = r.cpu_pct / cameras
        fits = int(100.0 / per_camera_pct) if per_camera_pct > 0 else 0
        w, h = LIVE_SIZE
        return (
            f"{w}x{h} H.264 at 25 FPS; per camera {rates[0]:.1f}..{rates[-1]:.1f} FPS; "
            f"dropped {r.dropped}, stale {r.stale}, skipped {r.skipped}; "
            f"{per_camera_pct:.1f} % CPU per camera: saturates at ~{fits} cameras"
        )

    def _startup(self, precision: str, path: Path) -> None:
        """Seconds from the daemon's start to READY and to its first heatmap, without and with a warm cache."""
        repeat = max(1, min(self.plan.repeat, 3))
        with tempfile.TemporaryDirectory(prefix="edge-depth-bench-cache-") as cache:
            for mode, cache_dir, prime in (("none", None, 0), ("warm", cache, 1)):
                what = "no compiled-model cache" if mode == "none" else "warm compiled-model cache"
                self._progress(f"{precision} {self.results.input_size}: start-up, {what}")
                spec = StartupSpec(
                    model=str(path),
                    clip=self.clip,
                    input_size=self.size,
                    cache=mode,
                    cache_dir=cache_dir,
                    repeat=repeat,
                    prime=prime,
                    mqtt_host=self.broker[0],
                    mqtt_port=self.broker[1],
                )
                try:
                    r = run_in_child(startup_job, spec, timeout=120.0 + 90.0 * (repeat + prime))
                except BenchError as exc:
                    say(f"    failed: {exc}")
                    row = Row.missing(precision, self.results.input_size, f"start-up, {what}", f"failed: {exc}")
                    self.results.rows.append(row)
                    continue
                note = f"READY {r.ready_s:.2f} s, first heatmap {fmt(r.first_heatmap_s, 2)} s after process start"
                say(f"    {note}")
                self.results.rows.append(Row.missing(precision, self.results.input_size, f"start-up, {what}", note))
                self.details.startup.append(r)

    def _long_run(self, precision: str, path: Path, throughput: RawResult) -> None:
        frames = self.plan.long_frames
        self._progress(f"{precision} {self.results.input_size}: long run, 1 camera, {frames} frames")
        spec = self._spec(path, 1, heatmap_hz=self._heatmap_hz(throughput.fps, 1), frames=frames)
        r = self._pipeline_child(spec)
        m = r.memory
        note = (
            f"RSS {m.rss_start_mb:.0f} -> {m.rss_end_mb:.0f} MB ({m.rss_growth_pct:+.1f} %), "
            f"threads {m.threads_start} -> {m.threads_end}, files {m.fds_start} -> {m.fds_end}"
        )
        self._row(precision, f"long run, 1 camera, {frames} frames", r, note=note)
        self.details.long_run = LongRun(precision, r)

    def _torch(self) -> None:
        self._progress(f"PyTorch eager fp32 {self.results.input_size}, {TORCH_THREADS} threads")
        try:
            if importlib.util.find_spec("torch") is None:
                say("    torch is not installed: skipped")
                return
        except (ImportError, ValueError):
            return
        spec = TorchSpec(self.clip, self.size, self.plan.seconds, self.plan.repeat)
        r = run_in_child(torch_job, spec, timeout=self._raw_timeout() + 60)
        say(f"    {r.fps:.1f} FPS, p50 {r.p50_ms:.1f} ms, CPU {r.cpu_pct:.1f} %")
        self._row("torch", f"PyTorch eager, {TORCH_THREADS} threads", r, note="model and normalisation only")
        self.details.torch = r


def _size(size: tuple[int, int]) -> str:
    return "{}x{}".format(*size)


def _stages(p: PipelineResult, top: int = 5) -> str:
    """The busiest stages' CPU ms per frame, for a row's note."""
    items = list(p.thread_ms.items())[:top]
    return ", ".join(f"{name.removeprefix('native:')} {ms:.2f}" for name, ms in items) or "-"
