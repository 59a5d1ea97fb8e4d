"""A real RTSP server on loopback for tests: GStreamer's RTSP server serving an H.264 MP4 clip.

Run by Debian's system python3 (it needs python3-gi and gir1.2-gst-rtsp-server-1.0, which the project's
virtual environment does not have):

    python3 rtsp_server.py --clip CLIP.mp4 [--port PORT] [--mount /cam]

Prints ``READY rtsp://127.0.0.1:PORT/cam`` on stdout once it listens (PORT 0 picks a free port; the line
gives the one bound), then serves until SIGTERM or SIGINT. The clip is played once per client and not
looped: tests that run longer than the clip serve a longer clip (tests/support/rtsp.py makes one).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def _launch_line(clip: Path) -> str:
    location = str(clip).replace("\\", "\\\\").replace('"', '\\"')
    return f'( filesrc location="{location}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 )'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, required=True, help="H.264 MP4 clip to serve")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1; 0 picks a free one")
    parser.add_argument("--mount", default="/cam", help="path of the stream")
    args = parser.parse_args()
    if not args.clip.is_file():
        print(f"clip not found: {args.clip}", file=sys.stderr)
        return 2

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(_launch_line(args.clip.resolve()))
    # One pipeline per client: a client that reconnects starts a fresh pipeline and gets frames at once,
    # instead of joining (or waiting on the teardown of) a shared one.
    factory.set_shared(False)
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1

    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    print(f"READY rtsp://127.0.0.1:{server.get_bound_port()}{args.mount}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
