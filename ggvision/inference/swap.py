"""Model hot swap: a background loader prepares the next model while the current one keeps serving.

A ModelSlot is one served model (a configured model id, or the shadow). The loader thread resolves the slot's
source, loads it (load_model checks the sha256 and the input spec) and warms it up, then *stages* it. The one
thread that runs the slot's model picks the staged model up between two batches (`serving()`), so every frame
is processed by exactly one model and none waits for a load. A model that fails to load is refused: logged,
counted, reported through `on_refused`; the current model keeps serving and the same files are not retried
until they change.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.inference import ModelSource
from .resolve import ModelNotFound
from .stats import ModelStats

log = logging.getLogger("ggvision.inference")

KIND_TASKS = {"vision": ("detection", "classification"), "tabular": ("tabular",)}


@dataclass(frozen=True)
class Identity:
    """What was loaded: the folder, its files' (mtime, size), the session options."""

    folder: str
    files: tuple[tuple[int, int], ...]
    options: tuple[Any, ...]


def identity(folder: Path, options: tuple[Any, ...]) -> Identity:
    stats = []
    for name in sorted(p.name for p in folder.iterdir() if p.is_file()):
        st = (folder / name).stat()
        stats.append((st.st_mtime_ns, st.st_size))
    return Identity(str(folder), tuple(stats), options)


class ModelSlot:
    def __init__(self, name: str, kind: str, source: ModelSource) -> None:
        self.name = name  # model id ("detector"), or "<id>:shadow"
        self.kind = kind  # vision | tabular
        self.source = source
        self.stats = ModelStats()
        self.current: Any = None  # LoadedModel
        self.current_identity: Identity | None = None
        self.version_label = ""  # the component version it came from ("" for a folder)
        self.generation = 0  # bumped by each load request; a stale load is discarded
        self.refused: Identity | None = None
        self.missing: str | None = None  # why the source could not be found (retried periodically)
        self.on_swap: list[Callable[[ModelSlot], None]] = []
        self._staged: tuple[Any, Identity, str] | None = None
        self._lock = threading.Lock()
        self._closed = False

    def request(self) -> int:
        with self._lock:
            self.generation += 1
            return self.generation

    @property
    def ready(self) -> bool:
        """A model serves, or is staged to."""
        return self.current is not None or self._staged is not None

    def staged_identity(self) -> Identity | None:
        with self._lock:
            return self._staged[1] if self._staged else None

    def stage(self, model: Any, ident: Identity, version_label: str, generation: int) -> bool:
        with self._lock:
            if self._closed or generation != self.generation:
                return False  # superseded by a newer request (or the slot is gone)
            old, self._staged = self._staged, (model, ident, version_label)
        if old is not None:
            old[0].close()
        return True

    def serving(self) -> Any:
        """The model to run now; switches to a staged model first. Call only from the slot's consumer thread."""
        with self._lock:
            staged, self._staged = self._staged, None
            if staged is None:
                return self.current
            old = self.current
            self.current, self.current_identity, self.version_label = staged
        m = self.current.manifest
        was = f" (was {old.manifest.name} {old.manifest.version})" if old is not None else ""
        log.info("model %s: now serving %s %s%s on %s, loaded in %.0f ms", self.name, m.name, m.version, was,
                 self.current.provider, self.current.load_ms)
        self.stats.new_model()
        for cb in self.on_swap:
            cb(self)
        if old is not None:
            old.close()
        return self.current

    def close(self) -> None:
        with self._lock:
            self._closed = True
            staged, self._staged = self._staged, None
            current, self.current = self.current, None
        for m in (staged[0] if staged else None, current):
            if m is not None:
                m.close()


class ModelLoader:
    """One background thread that loads models for slots, in request order."""

    def __init__(self, load: Callable[[Path], Any], resolve: Callable[[ModelSource], tuple[Path, str]],
                 options: Callable[[], tuple[Any, ...]], on_staged: Callable[[ModelSlot], None],
                 on_refused: Callable[[ModelSlot, str], None]) -> None:
        self._load = load
        self._resolve = resolve
        self._options = options
        self._on_staged = on_staged
        self._on_refused = on_refused
        self._queue: queue.Queue[tuple[ModelSlot, int] | None] = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="inference-loader", daemon=True)
        self._thread.start()

    def request(self, slot: ModelSlot) -> None:
        """(Re)load `slot` from its source unless that is what it already serves or has staged."""
        with self._lock:
            self._pending += 1
            self._idle.clear()
        self._queue.put((slot, slot.request()))

    def wait_idle(self, timeout: float | None = None) -> bool:
        return self._idle.wait(timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(30)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._handle(*job)
            except Exception:  # never let the loader thread die
                log.exception("model %s: unexpected error while loading", job[0].name)
            finally:
                with self._lock:
                    self._pending -= 1
                    if self._pending == 0:
                        self._idle.set()

    def _handle(self, slot: ModelSlot, generation: int) -> None:
        if generation != slot.generation:
            return  # a newer request for this slot is queued
        source = slot.source
        try:
            folder, version = self._resolve(source)
        except ModelNotFound as e:
            if slot.missing != str(e):
                log.warning("model %s: %s; will retry", slot.name, e)
            slot.missing = str(e)
            return
        slot.missing = None
        ident = identity(folder, self._options())
        if ident in (slot.current_identity, slot.staged_identity()):
            return
        if ident == slot.refused:
            log.info("model %s: %s was refused before and has not changed; not loading it again", slot.name, folder)
            return
        what = f"{source.describe()}" + (f" {version}" if version and source.version is None else "")
        log.info("model %s: loading %s from %s", slot.name, what, folder)
        try:
            model = self._load(folder)
        except Exception as e:
            self._refuse(slot, ident, f"{what} ({folder}): {type(e).__name__}: {e}")
            return
        try:
            task = model.manifest.task
            if task not in KIND_TASKS[slot.kind]:
                raise ValueError(f"a {task} model cannot serve {'sensors' if slot.kind == 'tabular' else 'cameras'}"
                                 f" (expected {' or '.join(KIND_TASKS[slot.kind])})")
            # load_model has already warmed it up (first-run allocations, TensorRT engine build).
        except Exception as e:
            model.close()
            self._refuse(slot, ident, f"{what} ({folder}): {type(e).__name__}: {e}")
            return
        if slot.stage(model, ident, version, generation):
            self._on_staged(slot)
        else:
            model.close()

    def _refuse(self, slot: ModelSlot, ident: Identity, reason: str) -> None:
        slot.refused = ident
        slot.stats.record_load_error(reason)
        keep = (f"; still serving {slot.current.manifest.name} {slot.current.manifest.version}"
                if slot.current is not None else "; no model serves it yet")
        log.error("model %s: refused %s%s", slot.name, reason, keep)
        self._on_refused(slot, reason)

