"""fleet.json: where a running local fleet is (broker port, PKI, store, devices and their thing groups)."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..iotcore.pki import Pki, ensure_pki

CONTROLLER = "ggvision-fleet-controller"
_NAME = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")


class FleetError(RuntimeError):
    """A fleet that cannot be set up or reached; the message says what and where."""


@dataclass
class FleetInfo:
    dir: str
    port: int
    devices: dict[str, list[str]]  # thing -> thing groups
    store: str  # component store: <store>/recipes, <store>/artifacts

    @property
    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for thing, groups in sorted(self.devices.items()):
            for g in groups:
                out.setdefault(g, []).append(thing)
        return out

    def save(self) -> None:
        path = Path(self.dir) / "fleet.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(path)

    @classmethod
    def load(cls, fleet_dir: str | Path) -> FleetInfo:
        path = Path(fleet_dir) / "fleet.json"
        try:
            d: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            raise FleetError(f"no local fleet at {fleet_dir}: {path} not found (ggvision fleet up)") from None
        return cls(**d)


def check_name(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise FleetError(f"{what} {name!r}: expected 1-128 of letters, digits, : _ -")
    return name


def parse_groups(spec: str) -> dict[str, int]:
    """"dev=1,staging=2,production=5" -> {"dev": 1, ...}."""
    out: dict[str, int] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, sep, n = part.partition("=")
        if not sep or not n.isdigit() or int(n) < 0:
            raise FleetError(f"--groups: expected STAGE=COUNT[,STAGE=COUNT...], got {part!r}")
        out[check_name(name, "stage")] = int(n)
    return out


def controller_pki(fleet_dir: Path) -> Pki:
    return ensure_pki(fleet_dir / "pki", CONTROLLER)


def device_pki(fleet_dir: Path, thing: str) -> Path:
    """A device's PKI folder: the fleet CA and broker cert, and its own client cert (issued by ensure_pki)."""
    ca = controller_pki(fleet_dir)
    d = fleet_dir / "devices" / thing / "pki"
    d.mkdir(parents=True, exist_ok=True)
    for src, name in ((ca.ca_cert, "ca.pem"), (ca.ca_key, "ca.key"), (ca.server_cert, "server.pem"),
                      (ca.server_key, "server.key")):
        shutil.copy2(src, d / name)
    ensure_pki(d, thing)
    return d
