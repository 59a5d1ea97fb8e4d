"""The order of the measurements: per IR, raw LATENCY, raw THROUGHPUT and the pipeline in rounds, the latency run;
then the long run and PyTorch. Each measurement is a job in a child process; rows are added as they finish."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

from edge_depth.tools.bench.common import HEATMAP_EVERY, OFFERED_FPS, TORCH_THREADS, Plan, say
from edge_depth.tools.bench.jobs import (
    PipelineSpec,
    RawSpec,
    TorchSpec,
    clip_size,
    pipeline_job,
    raw_job,
    run_in_child,
    torch_job,
)
from edge_depth.tools.bench.report import Details, Figures, LongRun, RawSet, Results, Row, evaluate_targets, fmt
from edge_depth.tools.bench.results import PipelineResult, RawResult, combine_pipeline, combine_raw

_MAX_HEATMAP_HZ = 30.0  # the config's bound of heatmap.rate_hz
_MIN_HEATMAP_HZ = 0.2


class Bench:
    """Runs every measurement in order, printing progress to stderr, and collects the table."""

    def __init__(self, models: dict[str, Path], clip: Path, plan: Plan, broker: tuple[str, int]) -> None:
        from edge_depth.model.preprocess import auto_input_size  # noqa: PLC0415

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
        per_model = 1 + self.plan.repeat * (1 + len(self.plan.cameras)) + 1
        fp32_forced = 1 if "fp32" in self.models else 0
        return per_model * len(self.models) + fp32_forced + 1 + 1  # + long run + torch

    def _progress(self, what: str) -> None:
        self._step += 1
        say(f"[{self._step}/{self._steps}] {what} ...")

    def run(self) -> Results:
        for precision, path in self.models.items():
            latency, forced = self._raw(precision, path)
            throughput = self._throughput_rounds(precision, path, forced)
            self.details.raw[precision] = RawSet(latency, throughput, forced)
            self._latency(precision, path, latency)
        long_precision = "int8" if "int8" in self.models else next(iter(self.models))
        self._long_run(long_precision, self.models[long_precision], self.details.raw[long_precision].throughput)
        self._torch()
        self.results.targets.extend(evaluate_targets(self.details, self.plan, list(self.models)))
        return self.results

    def _row(self, precision: str, run: str, r: Figures, *, vs_raw: float | None = None, note: str = "") -> None:
        self.results.rows.append(Row.of(precision, self.results.input_size, run, r, vs_raw=vs_raw, note=note))

    @staticmethod
    def _show(r: RawResult | PipelineResult) -> None:
        say(f"    {r.fps:.1f} FPS, p50 {fmt(r.p50_ms)} ms, p95 {fmt(r.p95_ms)} ms, CPU {fmt(r.cpu_pct)} %")

    def _raw_child(self, spec: RawSpec) -> RawResult:
        r = run_in_child(raw_job, spec, timeout=self._raw_timeout())
        self._show(r)
        return r

    def _pipeline_child(self, spec: PipelineSpec) -> PipelineResult:
        r = run_in_child(pipeline_job, spec, timeout=self._pipe_timeout(spec))
        self._show(r)
        return r

    def _raw(self, precision: str, path: Path) -> tuple[RawResult, RawResult | None]:
        """The LATENCY hint (THROUGHPUT comes with the pipeline, in rounds); real f32 for a BF16-run FP32 IR."""
        self._progress(f"{precision} {self.results.input_size}: OpenVINO alone, LATENCY hint")
        latency = self._raw_child(self._raw_spec(path, "LATENCY"))
        self._row(precision, "OpenVINO alone, LATENCY", latency, note=latency.note)
        forced = None
        if precision == "fp32" and latency.inference_precision != "f32":
            # CPUs with BF16 (AVX512_BF16, AMX) run an FP32 IR in BF16 unless told otherwise: show real FP32 too.
            self._progress(f"{precision} {self.results.input_size}: OpenVINO alone, THROUGHPUT, f32 forced")
            forced = self._raw_child(self._raw_spec(path, "THROUGHPUT", precision="f32"))
        return latency, forced

    def _throughput_rounds(self, precision: str, path: Path, forced: RawResult | None) -> RawResult:
        """Raw THROUGHPUT and the pipeline in alternation, one repetition of each per round.

        Other processes load a shared machine differently from minute to minute: measured side by side and
        paired per round, the pipeline/raw ratio holds where the FPS figures alone would drift.
        """
        raw_rounds: list[RawResult] = []
        pipe_rounds: dict[int, list[PipelineResult]] = {n: [] for n in self.plan.cameras}
        size = self.results.input_size
        for k in range(1, self.plan.repeat + 1):
            self._progress(f"{precision} {size}: round {k}/{self.plan.repeat}, OpenVINO alone, THROUGHPUT hint")
            r = self._raw_child(self._raw_spec(path, "THROUGHPUT", repeat=1))
            raw_rounds.append(r)
            for n in self.plan.cameras:
                label = f"pipeline, {n} camera{'s' if n > 1 else ''}"
                self._progress(f"{precision} {size}: round {k}/{self.plan.repeat}, {label}, max speed")
                spec = self._spec(path, n, heatmap_hz=self._heatmap_hz(r.fps, n), repeat=1)
                p = self._pipeline_child(spec)
                pipe_rounds[n].append(replace(p, vs_raw=p.fps / r.fps))
        throughput = combine_raw(raw_rounds)
        self._row(precision, "OpenVINO alone, THROUGHPUT", throughput, note=throughput.note)
        if forced is not None:
            self._row(precision, "OpenVINO alone, THROUGHPUT, f32 forced", forced, note=forced.note)
        for n, rounds in pipe_rounds.items():
            p = combine_pipeline(rounds)
            note = f"heatmap every {fmt(p.frames_per_heatmap)} frames"
            if n > 1:
                note += f"; min/mean camera {p.fairness:.2f}"
            self._row(precision, f"pipeline, {n} camera{'s' if n > 1 else ''}", p, vs_raw=p.vs_raw, note=note)
            self.details.pipeline.setdefault(precision, {})[n] = p
        return throughput

    def _raw_spec(self, path: Path, hint: str, precision: str | None = None, repeat: int | None = None) -> RawSpec:
        reps = repeat or self.plan.repeat
        return RawSpec(str(path), self.clip, self.size, hint, self.plan.seconds, reps, precision)

    def _raw_timeout(self) -> float:
        return 120.0 + self.plan.seconds * (self.plan.repeat + 1) * 2

    def _spec(
        self,
        path: Path,
        cameras: int,
        *,
        heatmap_hz: float,
        repeat: int,
        hint: str = "THROUGHPUT",
        realtime: bool = False,
        fps_limit: float | None = None,
        warmup_frames: int | None = None,
        frames: int | None = None,
    ) -> PipelineSpec:
        """A pipeline run; by default at maximum speed (THROUGHPUT hint, files read as fast as they are taken)."""
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
            repeat=repeat,
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
            repeat=1,
        )
        r = self._pipeline_child(spec)
        r = replace(r, vs_single_inference=r.p50_ms / single.p50_ms)
        note = f"p50 = {r.vs_single_inference:.2f} x single inference ({single.p50_ms:.1f} ms)"
        self._row(precision, f"1 camera, {OFFERED_FPS:g} FPS offered, LATENCY", r, note=note)
        self.details.latency[precision] = r

    def _long_run(self, precision: str, path: Path, throughput: RawResult) -> None:
        frames = self.plan.long_frames
        self._progress(f"{precision} {self.results.input_size}: long run, 1 camera, {frames} frames")
        spec = self._spec(path, 1, heatmap_hz=self._heatmap_hz(throughput.fps, 1), frames=frames, repeat=1)
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
