"""Recipe lifecycle steps: the step model, parsing Lifecycle sections, selections, and Skipif.

A step is given as a plain script or as an object (Script, Timeout, Skipif, Setenv,
RequiresPrivilege). `LifecycleParser` reads a manifest's Lifecycle and the global one, whose steps
may be keyed by selection (``{linux: ..., all: ...}``, at the top, per step or per Script);
`apply_selections` picks a manifest's steps from the global sections (first listed selection
wins); `should_skip` evaluates a step's Skipif (``onpath X`` / ``exists F``) when it is about to run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .recipereader import RecipeError, RecipeReader, join_path

# Lower-case step names the kernel knows; "uninstall" exists since nucleus v2.17.0.
STEP_NAMES = ("bootstrap", "install", "startup", "run", "shutdown", "recover", "uninstall")
STEP_OBJECT_KEYS = ("script", "timeout", "skipif", "setenv", "requiresprivilege")


@dataclass(frozen=True)
class LifecycleStep:
    script: str
    timeout: float | None = None  # None: the kernel applies the nucleus default for the step
    skipif: str | None = None
    setenv: dict[str, str] = field(default_factory=dict)
    requires_privilege: bool = False


@dataclass
class LifecycleSection:
    """One lifecycle (or one selection's part of the global lifecycle): steps and Setenv."""

    steps: dict[str, LifecycleStep] = field(default_factory=dict)
    setenv: dict[str, str] = field(default_factory=dict)


def should_skip(skipif: str | None, env: Mapping[str, str]) -> bool:
    """Evaluate a step's Skipif: ``onpath X`` (X found on env's PATH) or ``exists F``."""
    if skipif is None or not skipif.strip():
        return False
    keyword, _, arg = skipif.strip().partition(" ")
    arg = arg.strip()
    if not arg or keyword.lower() not in ("onpath", "exists"):
        raise RecipeError(f"Skipif: expected 'onpath <executable>' or 'exists <file>', got {skipif!r}")
    if keyword.lower() == "onpath":
        return shutil.which(arg, path=env.get("PATH", os.defpath)) is not None
    return Path(arg).exists()


def apply_selections(sections: Mapping[str | None, LifecycleSection],
                     selections: list[str]) -> tuple[dict[str, LifecycleStep], dict[str, str]]:
    """Combine global-lifecycle sections: the first listed selection defining a step wins."""
    order = [s.lower() for s in selections] + [None]
    steps: dict[str, LifecycleStep] = {}
    setenv: dict[str, str] = {}
    for selection in reversed(order):  # later entries are overridden by earlier ones
        section = sections.get(selection)
        if section is not None:
            setenv.update(section.setenv)
    for name in STEP_NAMES:
        for selection in order:
            section = sections.get(selection)
            if section is not None and name in section.steps:
                steps[name] = section.steps[name]
                break
    return steps, setenv


class LifecycleParser(RecipeReader):
    """Parses the Lifecycle sections of one recipe document."""

    def manifest_lifecycle(self, value: Any, path: str) -> dict[str, Any]:
        """A manifest's Lifecycle: lower-case step names -> LifecycleStep, plus "setenv" if given."""
        section = self.section(value, path, allow_selections=False)[None]
        out: dict[str, Any] = dict(section.steps)
        if section.setenv:
            out["setenv"] = section.setenv
        return out

    def global_lifecycle(self, value: Mapping[str, Any], path: str) -> dict[str | None, LifecycleSection]:
        """The recipe's global Lifecycle as sections keyed by selection (None = always)."""
        fields = self.ci(value, path)
        if any(low in STEP_NAMES for low in fields):
            # Steps written directly; a step may still pick per-selection scripts inside.
            return self.section(value, path, allow_selections=True)
        # Every key but Setenv is a selection key holding a lifecycle of its own.
        sections: dict[str | None, LifecycleSection] = {}
        for low, (orig, sub) in fields.items():
            sub_path = join_path(path, orig)
            if low == "setenv":
                sections.setdefault(None, LifecycleSection()).setenv = self.string_map(sub, sub_path)
                continue
            if sub is None:
                continue
            parsed = self.section(sub, sub_path, allow_selections=False)[None]
            sections[low] = parsed
        return sections

    def section(self, value: Any, path: str, *, allow_selections: bool) -> dict[str | None, LifecycleSection]:
        """Parse ``{Setenv, Install, Run, ...}``; returns sections keyed by selection (None = always)."""
        fields = self.ci(value, path)
        sections: dict[str | None, LifecycleSection] = {None: LifecycleSection()}
        for low, (orig, raw) in fields.items():
            step_path = join_path(path, orig)
            if low == "setenv":
                sections[None].setenv = self.string_map(raw, step_path) if raw is not None else {}
            elif low in STEP_NAMES:
                if raw is None:
                    continue
                for selection, step in self.step_variants(raw, step_path, allow_selections):
                    sections.setdefault(selection, LifecycleSection()).steps[low] = step
            else:
                hint = f"{', '.join(s.capitalize() for s in STEP_NAMES)} or Setenv"
                raise self.error(step_path, f"unknown lifecycle key (expected {hint})")
        return sections

    def step_variants(self, raw: Any, path: str,
                      allow_selections: bool) -> Iterator[tuple[str | None, LifecycleStep]]:
        """Yield (selection or None, step) for a step value, expanding selection maps when allowed."""
        if isinstance(raw, str):
            yield None, LifecycleStep(raw)
            return
        fields = self.ci(raw, path)
        if allow_selections and not any(low in STEP_OBJECT_KEYS for low in fields):
            # {linux: "...", all: {...}} - the step differs per selection key
            for low, (orig, sub) in fields.items():
                if sub is not None:
                    yield low, self.step(sub, join_path(path, orig))
            return
        script = fields.get("script", (None, None))[1]
        if allow_selections and isinstance(script, Mapping):
            # Script: {linux: "...", all: "..."} with the other properties shared
            s_key = fields["script"][0]
            for low, (orig, text) in self.ci(script, join_path(path, s_key)).items():
                body = {k: v for k, v in raw.items() if k != s_key}
                body[s_key] = self.string(text, join_path(join_path(path, s_key), orig))
                yield low, self.step(body, path)
            return
        yield None, self.step(raw, path)

    def step(self, raw: Any, path: str) -> LifecycleStep:
        if isinstance(raw, str):
            return LifecycleStep(raw)
        fields = self.ci(raw, path)
        unknown = [orig for low, (orig, _) in fields.items() if low not in STEP_OBJECT_KEYS]
        if unknown:
            raise self.error(join_path(path, unknown[0]), "unknown step property "
                             "(expected Script, Timeout, Skipif, Setenv, RequiresPrivilege)")
        if "script" not in fields:
            raise self.error(join_path(path, "Script"), "required key is missing")
        script = self.string(fields["script"][1], join_path(path, fields["script"][0]))

        timeout = None
        if "timeout" in fields and fields["timeout"][1] is not None:
            t_key, t_raw = fields["timeout"]
            timeout = self.number(t_raw, join_path(path, t_key))

        skipif = None
        if "skipif" in fields and fields["skipif"][1] is not None:
            sk_key, sk = fields["skipif"]
            skipif = self.string(sk, join_path(path, sk_key)).strip()
            keyword, _, arg = skipif.partition(" ")
            if keyword.lower() not in ("onpath", "exists") or not arg.strip():
                raise self.error(join_path(path, sk_key),
                                 f"expected 'onpath <executable>' or 'exists <file>', got {skipif!r}")

        setenv: dict[str, str] = {}
        if "setenv" in fields and fields["setenv"][1] is not None:
            setenv = self.string_map(fields["setenv"][1], join_path(path, fields["setenv"][0]))

        privileged = False
        if "requiresprivilege" in fields:
            rp_key, rp = fields["requiresprivilege"]
            privileged = self.boolean(rp, join_path(path, rp_key))
        return LifecycleStep(script, timeout, skipif, setenv, privileged)
