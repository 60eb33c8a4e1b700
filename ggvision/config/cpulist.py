"""CPU lists in configuration: a Linux cpu list ("1", "0-3", "0,2-3") or a list of CPU numbers, parsed and printed
(ggvision/component/cpus.py applies them to a component's threads)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MAX_CPU = 4095


def parse_cpus(value: Any) -> tuple[int, ...] | None:
    """A cpu list ("0-3,6") or a list of CPU numbers -> the sorted CPU numbers; None for absent/empty.
    ValueError says what is wrong."""
    if value is None or value == "" or value == []:
        return None
    cpus: set[int] = set()
    if isinstance(value, str):
        for part in value.replace(" ", "").split(","):
            lo, dash, hi = part.partition("-")
            if not lo.isdigit() or (dash and not hi.isdigit()):
                raise ValueError(f"{value!r} is not a cpu list like \"1\", \"0-3\" or \"0,2-3\"")
            a, b = int(lo), int(hi) if dash else int(lo)
            if b < a:
                raise ValueError(f"{value!r}: range {part} runs backwards")
            cpus.update(range(a, b + 1))
    elif isinstance(value, list | tuple) and all(isinstance(c, int) and not isinstance(c, bool) for c in value):
        cpus.update(value)
    else:
        raise ValueError(f"{value!r} is neither a cpu list string nor a list of CPU numbers")
    if any(c < 0 or c > MAX_CPU for c in cpus):
        raise ValueError(f"{value!r}: CPU numbers run from 0 to {MAX_CPU}")
    return tuple(sorted(cpus))


def cpu_list(cpus: Iterable[int]) -> str:
    """The compact cpu list of `cpus` ("0-2,5")."""
    out: list[str] = []
    run: list[int] = []
    for c in sorted(cpus):
        if run and c != run[-1] + 1:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
            run = []
        run.append(c)
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)
