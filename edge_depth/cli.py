"""The ``edge-depth`` command: run, check-config, predict, record, convert, bench.

Heavy modules are imported inside each command, so ``check-config`` (systemd's ExecStartPre=) stays fast
and ``convert`` is the only command that needs torch.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from edge_depth.config import Config

_BROKER_HELP = """\
The broker of the config file can be overridden without editing it: --mqtt-host/--mqtt-port, or the
environment variables EDGE_DEPTH_MQTT_HOST and EDGE_DEPTH_MQTT_PORT (the options win)."""


class _JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers (the redacting filter has escaped and bounded the text)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name}
        entry["message"] = record.getMessage()
        if record.exc_text:  # already cleaned by the redacting filter
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry)


def _setup_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    from edge_depth.redact import OneLineFormatter, RedactingFilter

    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:  # a traceback stays in its record's line (as \n): journald would make each line an entry of its own
        handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _with_broker(cfg: Config, args: argparse.Namespace) -> Config:
    """``cfg`` with the broker given on the command line or in the environment, validated like the file."""
    from pydantic import ValidationError

    from edge_depth.config import ConfigError, MqttConfig

    update = {k: v for k, v in (("host", args.mqtt_host), ("port", args.mqtt_port)) if v not in (None, "")}
    if not update:
        return cfg
    try:
        mqtt = MqttConfig.model_validate(cfg.mqtt.model_dump() | update)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise ConfigError([f"--mqtt-{key} (or EDGE_DEPTH_MQTT_{key.upper()}): {first['msg']}"]) from None
    return cfg.model_copy(update={"mqtt": mqtt})


class _EarlySignals:
    """What SIGTERM/SIGINT/SIGHUP/SIGUSR1/SIGUSR2 ask for before the service installs its own handlers: installed
    first thing, so that a signal during the (seconds long) start is neither lost nor fatal."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.received: list[str] = []
        self.pending: set[signal.Signals] = set()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        self.received.append(sig.name)
        if sig in (signal.SIGTERM, signal.SIGINT):
            self.stop.set()
        else:
            self.pending.add(sig)


# glibc's mallopt parameter for the number of malloc arenas (M_ARENA_MAX in malloc.h).
_M_ARENA_MAX = -8
_MALLOC_ARENAS = 2


def _limit_malloc_arenas() -> None:
    """At most two malloc arenas, however the daemon is started (systemd, a container, by hand).

    Every camera reconnect starts new threads (a capture session, FFmpeg's decoder threads) whose frame buffers
    land in whichever arena is free, and what is freed there mostly stays resident: with glibc's default of 8
    arenas per core, RSS climbed by about 10 % over ten minutes of camera restarts; with two it stays flat
    (tests/test_soak.py). Must run before threads start. An explicit MALLOC_ARENA_MAX wins, and a C library
    without mallopt is left alone.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_ARENA_MAX, _MALLOC_ARENAS)
    except (OSError, AttributeError):
        return


def _cmd_run(args: argparse.Namespace) -> int:
    early = _EarlySignals()  # before the heavy imports: a SIGTERM during the start is a clean stop
    _limit_malloc_arenas()
    # FFmpeg's warnings carry the reasons a camera fails ("HTTP error 401 Unauthorized"); OpenCV shows only its
    # errors unless told. Read when cv2 is first imported, so before anything below imports it.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "24")
    from edge_depth.config import ConfigError, load_config
    from edge_depth.model.engine import ModelError
    from edge_depth.model.preflight import model_problems
    from edge_depth.service import Service, StartupError

    def load() -> Config:
        return _with_broker(load_config(args.config, checks=[model_problems]), args)

    try:
        cfg = load()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    from edge_depth.nativelog import native_stderr

    # From here on what FFmpeg and OpenVINO print goes through logging too (JSON stays JSON, URLs redacted).
    _setup_logging(cfg.logging.level, cfg.logging.format, native_stderr.install())
    log = logging.getLogger("edge_depth")
    logged = len(early.received)
    for name in early.received[:logged]:
        log.info("received %s during the start%s", name, ", stopping" if name in ("SIGTERM", "SIGINT") else "")
    if early.stop.is_set():
        log.info("stopped")
        return 0
    import cv2

    # OpenCV passes FFmpeg's warnings on at its own WARNING level; they reach the log through the native
    # capture above (redacted, repeats folded) and explain camera failures.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_WARNING)
    service = Service(cfg, stop=early.stop, reload=load, pending=early.pending)
    service.install_signal_handlers()
    for name in early.received[logged:]:  # between the lines above and the service's own handlers
        log.info("received %s during the start", name)
    try:
        return service.run()
    except (ModelError, StartupError) as exc:
        log.error("%s", exc)
        return 2


def _cmd_check_config(args: argparse.Namespace) -> int:
    from edge_depth.config import check_config, schema_reference

    if args.schema:
        print(schema_reference())
        return 0
    if args.config is None:
        print("error: give a config file (or --schema)", file=sys.stderr)
        return 2
    from edge_depth.model.preflight import model_problems

    code, text = check_config(args.config, checks=[model_problems])
    print(text, file=sys.stdout if code == 0 else sys.stderr)
    return code


def _cmd_predict(args: argparse.Namespace) -> int:
    from edge_depth.tools.predict import predict

    _setup_logging("WARNING")
    return predict(args.images, model=args.model, out_dir=args.out, raw=args.raw, colormap=args.colormap)


def _cmd_convert(argv: list[str]) -> int:
    from convert.cli import main as convert_main

    _setup_logging("INFO")
    return convert_main(argv)


def _cmd_bench(argv: list[str]) -> int:
    from edge_depth.tools.bench import main as bench_main

    _setup_logging("WARNING")
    code: int = bench_main(argv)
    return code


def _cmd_record(argv: list[str]) -> int:
    from edge_depth.tools.record import main as record_main

    _setup_logging("WARNING")
    return record_main(argv)


# Commands with a parser of their own: their arguments are handed over untouched.
_FORWARDED = {"convert": _cmd_convert, "bench": _cmd_bench, "record": _cmd_record}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-depth", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run", help="run the daemon", epilog=_BROKER_HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    run.add_argument("-c", "--config", type=Path, default=Path("/etc/edge-depth/edge-depth.yaml"))
    run.add_argument("--mqtt-host", default=os.environ.get("EDGE_DEPTH_MQTT_HOST"), help="broker host name or address")
    run.add_argument("--mqtt-port", default=os.environ.get("EDGE_DEPTH_MQTT_PORT"), help="broker port")
    run.set_defaults(func=_cmd_run)

    check = sub.add_parser("check-config", help="validate a config file: exit 0 and a summary, or 2 and errors")
    check.add_argument("config", type=Path, nargs="?")
    check.add_argument("--schema", action="store_true", help="print every config field with its bounds")
    check.set_defaults(func=_cmd_check_config)

    predict = sub.add_parser("predict", help="heatmaps (and raw depth) for single images")
    predict.add_argument("images", type=Path, nargs="+")
    predict.add_argument("-m", "--model", type=Path, default=Path("models/midas_small_int8.xml"))
    predict.add_argument("-o", "--out", type=Path, default=Path("."))
    predict.add_argument("--raw", choices=("none", "png16", "npy"), default="none", help="also save the raw depth")
    predict.add_argument("--colormap", default="inferno")
    predict.set_defaults(func=_cmd_predict)

    conv = sub.add_parser(
        "convert", help="convert MiDaS v2.1 small to OpenVINO IR (see `convert --help`)", add_help=False
    )
    conv.add_argument("rest", nargs=argparse.REMAINDER)
    conv.set_defaults(func=_cmd_convert)

    bench = sub.add_parser("bench", help="benchmark the model and the full pipeline", add_help=False)
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    bench.set_defaults(func=_cmd_bench)

    rec = sub.add_parser(
        "record", help="record a camera's depth (and images) for replay (see `record --help`)", add_help=False
    )
    rec.add_argument("rest", nargs=argparse.REMAINDER)
    rec.set_defaults(func=_cmd_record)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in _FORWARDED:
        return _FORWARDED[argv[0]](argv[1:])
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
