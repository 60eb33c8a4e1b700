"""A tiny RTSP server for the capture tests (run with Debian's /usr/bin/python3, which has `gi`).

    /usr/bin/python3 tests/rtsp_server.py --file video.mkv [--port 0] [--mount /cam] [--paths N]

Serves the H.264 track of a container file over RTSP on 127.0.0.1 without re-encoding, in real
time (the payloader's sink syncs on the clock). Each client gets its own pipeline, so every
connection starts at the beginning of the file. `--paths N` also serves the same file on /cam0 .. /cam{N-1}
(N cameras from one server process, bench/suite.py). Prints `READY <port>` once listening.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

DEMUXERS = {".avi": "avidemux", ".mkv": "matroskademux", ".mp4": "qtdemux", ".mov": "qtdemux", ".ts": "tsdemux"}


def launch_line(path: str) -> str:
    ext = path[path.rfind(".") :].lower()
    demux = DEMUXERS.get(ext)
    if demux is None:
        raise SystemExit(f"unsupported container {ext!r}; use one of {sorted(DEMUXERS)}")
    # config-interval=-1: SPS/PPS before every IDR, as IP cameras do.
    return (
        f'( filesrc location="{path}" ! {demux} ! queue ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )'
    )


def require_auth(server: GstRtspServer.RTSPServer, factory: GstRtspServer.RTSPMediaFactory, user: str, pw: str) -> None:
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, pw), token)
    server.set_auth(auth)
    role, _ = Gst.Structure.from_string(
        "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
    )
    factory.add_role_from_structure(role)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--mount", default="/cam")
    ap.add_argument("--user", help="require RTSP basic authentication with this user ...")
    ap.add_argument("--password", default="", help="... and this password")
    ap.add_argument("--paths", type=int, default=0, help="also serve the file on /cam0 .. /cam{N-1}")
    args = ap.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    for mount in [args.mount, *(f"/cam{k}" for k in range(args.paths))]:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch_line(args.file))
        factory.set_shared(False)
        if args.user:
            require_auth(server, factory, args.user, args.password)
        server.get_mount_points().add_factory(mount, factory)
    if server.attach(None) == 0:
        raise SystemExit(f"cannot listen on 127.0.0.1:{args.port}")

    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    sys.exit(0)


if __name__ == "__main__":
    main()
