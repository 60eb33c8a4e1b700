"""Recording: remux a camera's compressed packets into MPEG-TS segments, without re-encoding.

- A segment starts on a keyframe and is cut at the first keyframe at least `segment_seconds` after its
  start, so every segment decodes on its own. (With open GOPs, the few leading B-frames of a segment
  reference the previous one; cameras normally send closed GOPs.)
- Timestamps are kept as they come from the source (made monotonic), so segments concatenate into a
  continuous stream; the MPEG-TS muxer inserts SPS/PPS before keyframes when the source does not
  repeat them in-band and converts AVCC (mp4/avi/mkv) to Annex B itself.
- Written as `.<name>.tmp` in `out_dir`, hashed while written, fsync'd, renamed atomically into place,
  the directory fsync'd, and only then announced with `on_segment`.
- Free space: a segment is not started when fewer than `min_free_bytes` would stay free on `out_dir`'s
  filesystem (the last space is left to event records and alerts); like a full disk, that is a RecordError
  raised from an OSError (ENOSPC), so the worker counts it as a storage condition and frames keep flowing.
- Gaps: time that could not be recorded (a segment given up, frames until the next keyframe that could start
  one) is told through `on_gap(start, end, reason)` in epoch seconds: when it begins, again each time it grew by
  `segment_seconds`, and a last time when a segment is written again (it then ends where that segment starts).
  Calls for one gap share its start, so a reader can merge them.
- Local retention: after each new segment, this camera's segments older than `retain_s` are deleted
  (the Uplink keeps its own hard link or copy of what it queued, so this never loses an upload). The
  suite's disk budget may delete the oldest sooner (`evict_oldest`).
- Times: stream seconds + `time_offset` (the worker passes the offset that maps the stream clock to
  epoch seconds). Segment i ends exactly where segment i+1 starts (at the cut keyframe's time); the
  last segment of a connection ends at its last frame's time plus one frame duration.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

import av

from ..component.storage import condition_of, describe, short_of_space

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmentInfo:
    camera: str
    path: Path
    start: float  # epoch seconds (see module doc)
    end: float
    size: int  # bytes
    sha256: str
    keyframe_start: bool = True

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict:
        return {
            "camera": self.camera,
            "path": str(self.path),
            "start": self.start,
            "end": self.end,
            "size": self.size,
            "sha256": self.sha256,
            "keyframeStart": self.keyframe_start,
        }


class RecordError(Exception):
    """Writing a segment failed; the segment was discarded and the next keyframe starts a new one."""


class _HashingWriter:
    """File-like sink for PyAV that hashes and counts bytes on the way to disk (no second read pass)."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)


class SegmentRecorder:
    def __init__(
        self,
        camera: str,
        out_dir: str | os.PathLike[str],
        segment_seconds: float,
        template_stream: av.stream.Stream,
        on_segment: Callable[[SegmentInfo], None],
        time_offset: float = 0.0,
        retain_s: float | None = None,
        min_free_bytes: int = 0,
        on_gap: Callable[[float, float, str], None] | None = None,
    ) -> None:
        self.camera = camera
        self.retain_s = retain_s
        self.min_free_bytes = min_free_bytes
        self.on_gap = on_gap
        self._gap: list[float] | None = None  # [start, end] epoch of time not recorded, until a segment is again
        self._gap_reason = ""
        self._gap_told: float | None = None  # the gap's end when it was last told
        self.out_dir = Path(out_dir).absolute()  # announced paths are absolute; a relative dir is the work dir's
        self.segment_seconds = segment_seconds
        self.template = template_stream
        self.on_segment = on_segment
        self.time_offset = time_offset
        self.bytes_written = 0  # of announced segments
        self.segments = 0
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._out: av.container.OutputContainer | None = None
        self._stream: av.stream.Stream | None = None
        self._file: BinaryIO | None = None
        self._writer: _HashingWriter | None = None
        self._tmp: Path | None = None
        self._start = 0.0
        self._end = 0.0
        self._last_dts: int | None = None
        self._last_tb = None
        self._frame_s = 0.0

    @property
    def recording(self) -> bool:
        return self._out is not None

    def mux(self, packet: av.Packet) -> None:
        """Add one demuxed packet (after it was decoded, if at all: muxing rescales it in place)."""
        if packet.size == 0 or packet.time_base is None:
            return
        t = self._sanitize(packet)
        if self._out is None:
            if not packet.is_keyframe:
                return  # wait for a keyframe: a segment must decode on its own
            self._open(t)
        elif packet.is_keyframe and t - self._start >= self.segment_seconds - 1e-6:
            self._finish(t)
            self._open(t)
        try:
            packet.stream = self._stream
            self._out.mux(packet)  # type: ignore[union-attr]
        except Exception as e:
            start = self._start
            self.abort()
            self._lost(start, t, e)
            raise RecordError(f"muxing failed: {e}") from e
        self._end = max(self._end, t + self._frame_s)

    def _sanitize(self, packet: av.Packet) -> float:
        """Make dts strictly increasing and pts >= dts (RTSP's first packets may lack timestamps)."""
        tb = packet.time_base
        if self._last_tb is not None and tb != self._last_tb:
            self._last_dts = None  # a new stream clock: nothing to compare with
        dts = packet.dts if packet.dts is not None else packet.pts
        if dts is None:
            dts = 0 if self._last_dts is None else self._last_dts + 1
        if self._last_dts is not None:
            if dts > self._last_dts:
                self._frame_s = float((dts - self._last_dts) * tb)
            else:
                dts = self._last_dts + 1
        pts = packet.pts if packet.pts is not None and packet.pts >= dts else dts
        packet.dts, packet.pts = dts, pts
        self._last_dts, self._last_tb = dts, tb
        return float(pts * tb)

    def _open(self, t: float) -> None:
        start = t + self.time_offset
        stamp = datetime.fromtimestamp(start, timezone.utc).strftime("%Y%m%dT%H%M%S.%f")[:-3]
        name = f"{self.camera}-{stamp}Z.ts"
        self._tmp = self.out_dir / f".{name}.tmp"
        try:
            short = short_of_space(self.out_dir, self.min_free_bytes)
            if short:
                raise OSError(errno.ENOSPC, short)
            self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed in _finish/abort
            self._writer = _HashingWriter(self._file)
            self._out = av.open(self._writer, "w", format="mpegts")
            # opaque=True: copy the decoder's parameters instead of opening an encoder just to remux.
            self._stream = self._out.add_stream_from_template(self.template, opaque=True)
        except Exception as e:
            self.abort()
            self._lost(t, t, e)
            raise RecordError(f"cannot start segment: {e}") from e
        self._start = t
        self._end = t

    def _finish(self, end_t: float) -> None:
        out, f, writer, tmp = self._out, self._file, self._writer, self._tmp
        assert out is not None and f is not None and writer is not None and tmp is not None
        try:
            out.close()  # writes the trailer through the hashing writer
            f.flush()
            os.fsync(f.fileno())
            f.close()
            final = tmp.with_name(tmp.name[1:].removesuffix(".tmp"))
            os.replace(tmp, final)
            _fsync_dir(self.out_dir)
        except Exception as e:
            start = self._start
            self.abort()
            self._lost(start, end_t, e)
            raise RecordError(f"cannot finish segment: {e}") from e
        self._out = self._file = self._writer = self._tmp = None
        self.bytes_written += writer.size
        self.segments += 1
        info = SegmentInfo(
            camera=self.camera,
            path=final,
            start=self._start + self.time_offset,
            end=end_t + self.time_offset,
            size=writer.size,
            sha256=writer.sha.hexdigest(),
        )
        if self._gap is not None:  # recording works again: the gap ends where this segment starts
            self._gap[1] = max(self._gap[1], info.start)
            self._tell_gap()
            self._gap = self._gap_told = None
        self.on_segment(info)
        if self.retain_s is not None:
            prune_segments(self.out_dir, self.camera, self.retain_s)

    def close(self, end: float | None = None) -> None:
        """Finish the open segment, if any, at stream time `end` (default: the end of its last frame)."""
        if self._out is not None:
            self._finish(max(self._end if end is None else end, self._start))
        elif self._gap is not None:  # the connection ends inside a gap: tell how far it went
            self._tell_gap()

    def _lost(self, t0: float, t1: float, e: BaseException) -> None:
        """Stream times [t0, t1] could not be recorded (the segment there was given up)."""
        a, b = t0 + self.time_offset, max(t0, t1, self._end) + self.time_offset
        if self._gap is None:
            self._gap, self._gap_reason = [a, b], f"{condition_of(e) or 'error'}: {describe(e)}"
        else:
            self._gap[0], self._gap[1] = min(self._gap[0], a), max(self._gap[1], b)
        if self._gap_told is None or self._gap[1] - self._gap_told >= self.segment_seconds:
            self._tell_gap()

    def _tell_gap(self) -> None:
        if self._gap is None or self.on_gap is None:
            return
        self._gap_told = self._gap[1]
        try:
            self.on_gap(self._gap[0], self._gap[1], self._gap_reason)
        except Exception:
            log.exception("camera %s: on_gap callback failed", self.camera)

    def abort(self) -> None:
        """Drop the open segment and its temp file (used on errors)."""
        for closer in (self._out, self._file):
            if closer is not None:
                try:
                    closer.close()
                except Exception:
                    pass
        if self._tmp is not None:
            try:
                self._tmp.unlink(missing_ok=True)
            except OSError as e:  # a read-only volume: the temp file stays (a dot file, never announced)
                log.debug("camera %s: cannot remove %s: %s", self.camera, self._tmp, e)
        self._out = self._file = self._writer = self._tmp = None


def prune_segments(out_dir: Path, camera: str, retain_s: float, now: float | None = None) -> int:
    """Delete `camera`'s finished segments in `out_dir` last written more than `retain_s` ago; returns how many."""
    cutoff = (time.time() if now is None else now) - retain_s
    removed = 0
    for seg in out_dir.glob(f"{camera}-*.ts"):  # finished ones only: temp files start with a dot
        try:
            if seg.stat().st_mtime < cutoff:
                seg.unlink()
                removed += 1
        except FileNotFoundError:  # removed meanwhile (e.g. by an operator)
            continue
        except OSError as e:
            log.warning("camera %s: cannot delete old segment %s: %s", camera, seg.name, e)
    return removed


def recorded(places: list[tuple[Path, str]]) -> list[tuple[float, int, Path]]:
    """The finished segments of (folder, camera) pairs as (mtime, size, path), oldest first."""
    out = []
    for out_dir, camera in places:
        for seg in out_dir.glob(f"{camera}-*.ts"):
            try:
                st = seg.stat()
            except OSError:  # removed meanwhile
                continue
            out.append((st.st_mtime, st.st_size, seg))
    out.sort()
    return out


def evict_oldest(places: list[tuple[Path, str]], nbytes: int) -> tuple[int, int]:
    """The disk budget's `video`: delete the oldest finished segments of (folder, camera) pairs, across
    cameras, until `nbytes` are gone; returns (segments, bytes). A segment the Uplink still queues keeps its
    bytes through the Uplink's own hard link until the budget reaches the Uplink's video too."""
    n = freed = 0
    for _, size, seg in recorded(places):
        if freed >= nbytes:
            break
        try:
            seg.unlink()
        except FileNotFoundError:
            continue
        except OSError as e:
            log.warning("cannot delete segment %s for the disk budget: %s", seg.name, e)
            continue
        n, freed = n + 1, freed + size
    return n, freed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
