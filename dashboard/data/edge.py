"""The edge backend: what one box keeps under its runtime root (`ggvision run --root R`, `ggvision nucleus --root R`),
read without any AWS call, so a technician can use the dashboard on site while the VPN is down.

    R/config/config.json                          the components' configuration (cameras, zones, site, promPort)
    R/work/com.ggvision.Filter/filter/local/      the Filter's local log (its workDir's local/; ggvision/filter/
        {YYYYMMDDTHH}/events.jsonl, fire.jsonl        locallog.py): every event's end record, sent or not, and the
        {YYYYMMDDTHH}/snapshots/                      fire-risk results; the snapshots hard-linked, named by item id
        {YYYYMMDDTHH}/counts.jsonl                    and the counting analytics' counts/1.0 intervals
    R/work/com.ggvision.Uplink/bucket/            the directory bucket, laid out as the cloud's data bucket:
        results/iot-rules/results/{thing}/...         the archive lane's uplink-batch/1.0 files: event/1.0 records
        images/{site}/{thing}/{camera}/...            snapshots (+ .metadata.json naming the Uplink item id)
        clips/...                                     clips (metadata: the events they cover)
    R/work/com.ggvision.Uplink/queue/             the Uplink's queue: backlog, link state, snapshots not sent yet
    R/work/com.ggvision.Capture/segments/         Capture's local MPEG-TS recordings, `{camera}-{UTC start}.ts`
    /dev/shm/ggv-{camera}-{pid}                   the frame rings: the live view attaches as a reader (never
                                                  blocks the writer; a lapped read is skipped)
    Health's Prometheus endpoint (127.0.0.1:promPort)  camera fps and status, when Health runs

Events are the local log's `end` records and, where the Uplink writes a directory bucket, its archive lane's (the
same event in both is shown once, from the log: it keeps the whole box history); the edge has no cloud verdicts.
A snapshot is read from the log, else the bucket, else the Uplink's queue (not sent yet). Fire risk over time is
the log's fire-risk results.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sqlite3
import time
import urllib.request
from calendar import timegm
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import numpy as np

from ggvision.contract.keys import CLIPS, IMAGES, RULE_ARCHIVE_PREFIX
from ggvision.framebus import FrameRing, camera_slug
from ggvision.framebus.ringfile import owner_alive, read_owner, shm_dir

from .base import (
    PAGE_SIZE,
    Box,
    Camera,
    Counts,
    Device,
    Event,
    EventPage,
    EventQuery,
    FireView,
    counts_of,
    decode_cursor,
    encode_cursor,
)

CAPTURE, FILTER, UPLINK, HEALTH, SUITE = (f"com.ggvision.{c}" for c in ("Capture", "Filter", "Uplink", "Health",
                                                                        "Suite"))
# the Filter's local log (ggvision/filter/locallog.py)
LOG_EVENTS, LOG_FIRE, LOG_COUNTS = "events.jsonl", "fire.jsonl", "counts.jsonl"
SEGMENT_NAME = re.compile(r"^(?P<camera>.+)-(?P<t>\d{8}T\d{6}\.\d{3})Z\.ts$")
ONLINE_WITHIN_S = 60.0  # the Uplink records its state every few seconds while it runs
FIRE_WINDOW_S = 24 * 3600.0  # the Fire risk page plots the last day ...
FIRE_POINTS = 720  # ... thinned to this many points, each its interval's highest probability (no spike hidden)


@dataclass(frozen=True)
class EdgeSettings:
    root: Path
    prom_timeout_s: float = 0.5

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> EdgeSettings:
        """GGVISION_DASHBOARD_ROOT, else GGVISION_ROOT: the runtime root."""
        env = dict(os.environ if env is None else env)
        root = env.get("GGVISION_DASHBOARD_ROOT") or env.get("GGVISION_ROOT")
        if not root:
            raise ValueError("dashboard (edge backend): set GGVISION_DASHBOARD_ROOT to the runtime root "
                             "(`ggvision run --root R`)")
        if not Path(root).is_dir():
            raise ValueError(f"dashboard (edge backend): runtime root {root} is not a folder")
        return cls(Path(root))


def _segment_start(name: str) -> tuple[str, float] | None:
    m = SEGMENT_NAME.match(name)
    if not m:
        return None
    return m["camera"], timegm(time.strptime(m["t"][:15], "%Y%m%dT%H%M%S")) + float("0" + m["t"][15:])


class EdgeSource:
    name: Literal["edge"] = "edge"

    def __init__(self, settings: EdgeSettings) -> None:
        self.root = settings.root
        self.settings = settings
        self.work = self.root / "work"
        self.bucket = self.work / UPLINK / "bucket"
        self.queue_dir = self.work / UPLINK / "queue"
        self._parsed: dict[str, tuple[float, list[Event]]] = {}  # archive file -> (mtime, its events)
        self._lines: dict[str, tuple[tuple[float, int], list[dict[str, Any]]]] = {}  # log file -> (stat, lines)
        self._rings: dict[str, FrameRing] = {}

    # ------------------------------------------------------------------ configuration
    def config(self) -> dict[str, Any]:
        try:
            doc = json.loads((self.root / "config" / "config.json").read_text())
        except (OSError, ValueError):
            return {}
        return doc.get("services", doc) if isinstance(doc, dict) else {}

    def site(self) -> str:
        return str((self.config().get(SUITE) or {}).get("site") or "local")

    def thing(self) -> str:
        things = sorted(p.name for p in (self.bucket / RULE_ARCHIVE_PREFIX / "results").glob("*") if p.is_dir())
        if things:
            return things[0]
        for path in reversed(self._log_files(LOG_EVENTS)):
            for line in self._read_lines(path):
                if isinstance(line.get("thing"), str):
                    return str(line["thing"])
        return "ggvision-local"

    # ------------------------------------------------------------------ the Filter's local log
    def log_dir(self) -> Path:
        """The Filter's workDir (its configuration, else ./filter in its work folder) + local/."""
        work_dir = (self.config().get(FILTER) or {}).get("workDir")
        return (Path(work_dir) if work_dir else self.work / FILTER / "filter") / "local"

    def _log_files(self, name: str) -> list[str]:
        """The log's files of one kind, oldest hour first."""
        return sorted(glob.glob(str(self.log_dir() / "*" / name)))

    def _read_lines(self, path: str) -> list[dict[str, Any]]:
        """A log file's JSON lines (cached until it grows); a torn or foreign line is skipped."""
        try:
            st = os.stat(path)
        except OSError:
            return []
        cached = self._lines.get(path)
        if cached is None or cached[0] != (st.st_mtime, st.st_size):
            out = []
            try:
                with open(path, "rb") as f:
                    for raw in f:
                        try:
                            doc = json.loads(raw)
                        except ValueError:
                            continue
                        if isinstance(doc, dict):
                            out.append(doc)
            except OSError:
                return []
            cached = self._lines[path] = ((st.st_mtime, st.st_size), out)
        return cached[1]

    def _log_events(self) -> list[Event]:
        out = []
        for path in self._log_files(LOG_EVENTS):
            for line in self._read_lines(path):
                ev = _event(str(line.get("thing") or "ggvision-local"), line.get("event"))
                if ev is not None:
                    out.append(ev)
        return out

    def _log_snapshots(self) -> dict[str, str]:
        """Uplink item id -> the log's hard link of that snapshot."""
        out = {}
        for path in glob.glob(str(self.log_dir() / "*" / "snapshots" / "*")):
            name = os.path.basename(path)
            out[unquote(name.rsplit(".", 1)[0] if "." in name else name)] = path
        return out

    # ------------------------------------------------------------------ events: the log's and the archive lane's
    def _all_events(self) -> list[Event]:
        snaps = self._snapshot_files()
        out: list[Event] = []
        seen: set[str] = set()
        for ev in self._log_events():  # first: the log keeps the whole box history (the archive has 8 boxes)
            if ev.key not in seen:
                seen.add(ev.key)
                out.append(ev)
        for path in glob.glob(str(self.bucket / RULE_ARCHIVE_PREFIX / "results" / "*" / "**" / "*.json"),
                              recursive=True):
            try:
                mtime = os.stat(path).st_mtime
            except OSError:
                continue
            cached = self._parsed.get(path)
            if cached is None or cached[0] != mtime:
                cached = (mtime, self._parse_batch(Path(path)))
                self._parsed[path] = cached
            for ev in cached[1]:
                if ev.key not in seen:
                    seen.add(ev.key)
                    out.append(ev)
        site = self.site()
        out = [Event(**{**ev.__dict__, "site": site, "snapshot": snaps.get(ev.snapshot or "", None)}) for ev in out]
        out.sort(key=lambda e: (e.start, e.key), reverse=True)
        return out

    def _parse_batch(self, path: Path) -> list[Event]:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            return []
        thing = str(doc.get("thing") or path.relative_to(self.bucket / RULE_ARCHIVE_PREFIX / "results").parts[0])
        items = [item for item in doc.get("items") or [] if isinstance(item, dict)]
        return [ev for ev in (_event(thing, item.get("payload")) for item in items) if ev is not None]

    def _snapshot_files(self) -> dict[str, str]:
        """Uplink item id -> the snapshot file: delivered ones in the bucket, pending ones in the queue."""
        out: dict[str, str] = self._log_snapshots()
        for meta in glob.glob(str(self.bucket / IMAGES / "**" / "*.metadata.json"), recursive=True):
            try:
                doc = json.loads(Path(meta).read_text())
                out.setdefault(str(doc["metadata"]["id"]), meta[: -len(".metadata.json")])
            except (OSError, ValueError, KeyError, TypeError):
                continue
        for item_id, file in self._queue_rows("SELECT id, file FROM items WHERE kind = 'object' AND target LIKE ?",
                                              (f"{IMAGES}/%",)):
            if file:
                out.setdefault(str(item_id), str(self.queue_dir / "payloads" / file))
        return out

    def _queue_rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        index = self.queue_dir / "index.sqlite3"
        if not index.exists():
            return []
        db = sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=5)  # read-only: the Uplink owns it
        try:
            return db.execute(sql, args).fetchall()
        except sqlite3.Error:
            return []
        finally:
            db.close()

    def events(self, query: EventQuery, cursor: str | None = None, limit: int = PAGE_SIZE) -> EventPage:
        offset = int(decode_cursor(cursor).get("offset", 0)) if cursor else 0
        evs = [e for e in self._all_events() if _matches(e, query)]
        page = evs[offset: offset + limit]
        nxt = offset + limit
        return EventPage(page, encode_cursor({"offset": nxt}) if nxt < len(evs) else None)

    def labels(self) -> list[str]:
        return sorted({e.label for e in self._all_events()})

    # ------------------------------------------------------------------ media
    def snapshot_url(self, event: Event) -> str | None:
        return None  # the box serves no files of its own: the page shows the bytes

    def snapshot(self, event: Event) -> bytes | None:
        if not event.snapshot:
            return None
        try:
            return Path(event.snapshot).read_bytes()
        except OSError:
            return None  # sent and given up since (retention, the disk budget)

    def segments(self, camera: str) -> list[tuple[float, Path]]:
        out = []
        for p in (self.work / CAPTURE / "segments").glob("*.ts"):
            s = _segment_start(p.name)
            if s and s[0] == camera:
                out.append((s[1], p))
        return sorted(out)

    def clip(self, event: Event) -> bytes | None:
        """Capture's local segments that overlap the event (each runs until the next starts), else the bucket's
        clips whose metadata names it."""
        segs = self.segments(event.camera)
        picked = [p for i, (t0, p) in enumerate(segs)
                  if t0 <= (event.end or event.start) and (i + 1 == len(segs) or segs[i + 1][0] > event.start)]
        if not picked:
            for meta in glob.glob(str(self.bucket / CLIPS / "**" / "*.metadata.json"), recursive=True):
                try:
                    ids = json.loads(Path(meta).read_text()).get("producer_metadata", {}).get("event_ids", [])
                except (OSError, ValueError):
                    continue
                if event.event_id in ids:
                    picked.append(Path(meta[: -len(".metadata.json")]))
        data = b"".join(p.read_bytes() for p in sorted(picked) if p.exists())
        return data or None

    def live_frame(self, camera_key: str) -> np.ndarray | None:
        camera = camera_key.split("/", 1)[-1]
        ring = self._ring(camera)
        if ring is None:
            return None
        desc = ring.latest()
        frame = ring.read(desc) if desc is not None else None
        if frame is None and ring.replaced():
            self._rings.pop(camera, None)  # Capture restarted the camera: attach to its new ring next time
        return frame

    def _ring(self, camera: str) -> FrameRing | None:
        ring = self._rings.get(camera)
        if ring is not None:
            return ring
        for path in sorted(glob.glob(os.path.join(shm_dir(), f"ggv-{camera_slug(camera)}-*"))):
            try:
                pid, start = read_owner(path)
                if not owner_alive(pid, start) or not self._owner_is_ours(pid):
                    continue
                ring = FrameRing.attach(os.path.basename(path))
            except (OSError, ValueError):
                continue
            if ring.camera == camera:
                self._rings[camera] = ring
                return ring
            ring.close()
        return None

    def _owner_is_ours(self, pid: int) -> bool:
        """Is the ring's writer a component of this runtime? Components run in `<root>/work/<name>`; several
        runtimes on one host (`ggvision fleet up`, a test run beside `make run`) can have a camera of the same
        name, and the live view must not show another device's frames. Where /proc does not tell (another
        user's process: Greengrass runs components as ggc_user), the ring is taken as before."""
        try:
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            return True
        return cwd.is_relative_to(self.root.resolve())

    # ------------------------------------------------------------------ the box
    def uplink_state(self) -> dict[str, Any]:
        rows = self._queue_rows("SELECT name, value FROM state")
        state = {k: json.loads(v) for k, v in rows}
        backlog = self._queue_rows("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM items")
        state["backlog_items"], state["backlog_bytes"] = backlog[0] if backlog else (None, None)
        return state

    def devices(self) -> list[Device]:
        st = self.uplink_state()
        online = st.get("online") or {}
        link = ("up" if online and all(online.values()) else "down" if online and not any(online.values())
                else "partial" if online else "unknown")
        seen = st.get("updated")
        versions: dict[str, str] = {}
        for p in sorted((self.root / "packages" / "recipes").glob("*.json")):
            name, _, version = p.stem.rpartition("-")
            if name:
                versions[name] = version
        return [Device(self.thing(), self.site(), seen, bool(seen and time.time() - float(seen) < ONLINE_WITHIN_S),
                       versions, st.get("backlog_items"), st.get("backlog_bytes"), link,
                       (f"uplink: {st['last_error']}",) if st.get("last_error") else ())]

    def sites(self) -> list[str]:
        return [self.site()]

    def prometheus(self) -> dict[tuple[str, str], float]:
        """(family, camera) -> value of Health's per-camera gauges; empty when Health's endpoint does not answer."""
        port = (self.config().get(HEALTH) or {}).get("promPort", 9108)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{int(port)}/metrics",
                                        timeout=self.settings.prom_timeout_s) as r:
                text = r.read().decode()
        except (OSError, ValueError):
            return {}
        out = {}
        for m in re.finditer(r'^(ggvision_camera_\w+)\{[^}]*camera="([^"]+)"[^}]*\}\s+(\S+)$', text, re.M):
            try:
                out[(m[1], m[2])] = float(m[3])
            except ValueError:
                continue
        return out

    def cameras(self, site: str | None = None) -> list[Camera]:
        cfg = self.config()
        filt = (cfg.get(FILTER) or {}).get("cameras") or {}
        prom = self.prometheus()
        thing, here = self.thing(), self.site()
        latest: dict[str, Event] = {}
        for ev in self._all_events():
            if ev.snapshot and ev.camera not in latest:
                latest[ev.camera] = ev
        out = []
        for cam in sorted((cfg.get(CAPTURE) or {}).get("cameras") or {}):
            zones = {str(z): [(float(x), float(y)) for x, y in pts]
                     for z, pts in ((filt.get(cam) or {}).get("zones") or {}).items()}
            up = prom.get(("ggvision_camera_up", cam))
            out.append(Camera(thing, cam, here, "unknown" if up is None else "up" if up else "down",
                              prom.get(("ggvision_camera_input_fps", cam)),
                              prom.get(("ggvision_camera_detection_fps", cam)),
                              latest[cam].start if cam in latest else None, zones, latest.get(cam)))
        return out

    def counts(self, camera_key: str, since: float, until: float) -> list[Counts]:
        """The camera's counts/1.0 intervals in the local log starting in [since, until], oldest first (the log
        keeps what the Filter sent: the hours of the range only are read)."""
        camera = camera_key.split("/", 1)[-1]
        first, last = time.strftime("%Y%m%dT%H", time.gmtime(since - 3600)), time.strftime(
            "%Y%m%dT%H", time.gmtime(min(until, 2**33) + 3600))  # logged up to an interval after its start
        out = []
        for path in self._log_files(LOG_COUNTS):
            if not first <= os.path.basename(os.path.dirname(path)) <= last:
                continue
            for line in self._read_lines(path):
                body = line.get("counts")
                c = counts_of(body) if isinstance(body, dict) and body.get("camera") == camera else None
                if c is not None and since <= c.start <= until:
                    out.append(c)
        return sorted(out, key=lambda c: (c.start, c.end))

    def fire(self) -> list[FireView]:
        from ggvision.model.fire_features import FEATURE_NAMES, GAS_KEYS, feature_vector

        history = self.fire_history()
        out = []
        for sensor in sorted(set((self.config().get(CAPTURE) or {}).get("sensors") or {}) | set(history)):
            frame = self.live_frame(sensor)
            feats: dict[str, float] = {}
            if frame is not None:
                try:
                    # the gas reading travels on IPC only: the thermal features alone (a neutral reading fills in)
                    vec = feature_vector(frame.reshape(frame.shape[:2]), dict.fromkeys(GAS_KEYS, 0.0))
                    feats = {n: float(v) for n, v in zip(FEATURE_NAMES, vec, strict=True) if n not in GAS_KEYS}
                except (ValueError, TypeError):
                    feats = {}
            points = history.get(sensor, [])
            out.append(FireView(sensor, frame, feats, points, note=(
                f"fire probability: the box's local log, the last {FIRE_WINDOW_S / 3600:g} h (each point the "
                "highest of its interval); " if points else
                "fire probability over time: not recorded in the box's local log (the Filter's localLog keeps "
                "Inference's results; off, or no result yet); ") + "gas features are not shown (SCD41 readings "
                "travel on IPC only)"))
        return out

    def fire_history(self, now: float | None = None) -> dict[str, list[tuple[float, float]]]:
        """sensor -> [(t, probability)] of the last FIRE_WINDOW_S from the local log, oldest first, at most
        FIRE_POINTS each (the highest probability of each interval, at its time)."""
        since = (time.time() if now is None else now) - FIRE_WINDOW_S
        raw: dict[str, list[tuple[float, float]]] = {}
        for path in self._log_files(LOG_FIRE)[-int(FIRE_WINDOW_S // 3600) - 2:]:  # the hours that can hold them
            for line in self._read_lines(path):
                try:
                    t, p, sensor = float(line["t"]), float(line["probability"]), str(line["sensor"])
                except (KeyError, TypeError, ValueError):
                    continue
                if t >= since:
                    raw.setdefault(sensor, []).append((t, p))
        out = {}
        for sensor, pts in raw.items():
            pts.sort()
            step = FIRE_WINDOW_S / FIRE_POINTS
            thinned: dict[int, tuple[float, float]] = {}
            for t, p in pts:
                k = int(t // step)  # intervals on the clock's grid: the same points on every reload
                if k not in thinned or p > thinned[k][1]:
                    thinned[k] = (t, p)
            out[sensor] = [thinned[k] for k in sorted(thinned)]
        return out


def _event(thing: str, p: Any) -> Event | None:
    """An event/1.x `end` record as the page's Event; None for anything else (another writer's malformed record
    is not ours to show)."""
    if not isinstance(p, dict) or not str(p.get("schema", "")).startswith("event/1.") or p.get("kind") != "end":
        return None
    try:
        best = p.get("best") or {}
        fs = p.get("frame_size")
        return Event(
            thing=thing, event_id=str(p["event_id"]), site="", camera=str(p["camera"]), label=str(p["label"]),
            start=float(p["start"]), end=float(p.get("end") or p["start"]), edge_score=float(best.get("score", 0)),
            boxes=tuple(Box(*map(float, b[:5])) for b in p.get("boxes") or [] if len(b) >= 5),
            zones=tuple(map(str, p.get("zones") or [])),
            frame_size=(int(fs[0]), int(fs[1])) if isinstance(fs, list) and len(fs) == 2 else None,
            snapshot=best.get("snapshot"))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _matches(e: Event, q: EventQuery) -> bool:
    return ((not q.site or e.site == q.site) and (not q.camera_key or f"{e.thing}/{e.camera}" == q.camera_key)
            and (not q.labels or e.label in q.labels) and (not q.zone or q.zone in e.zones)
            and (not q.verdict or e.verdict == q.verdict) and (q.since is None or e.start >= q.since)
            and (q.until is None or e.start <= q.until))
