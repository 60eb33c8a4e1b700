"""Recipe lifecycle steps: the step model, parsing Lifecycle sections, selections, and Skipif.

A step is given as a plain script or as an object (Script, Timeout, Skipif, Setenv,
RequiresPrivilege). `LifecycleParser` reads a manifest's Lifecycle and the global one, whose steps
may be keyed by selection (``{linux: ..., all: ...}``, at the top, per step or per Script);
`apply_selections` picks a manifest's steps from the global sections (first listed selection
wins); `should_skip` evaluates a step's Skipif when the step is about to run, exactly as the nucleus'
GenericExternalService.shouldSkip does (``[!]onpath X`` / ``[!]exists F``; anything else makes the step
fail, not the recipe).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .recipereader import RecipeReader, join_path

# Lower-case step names the kernel knows; "uninstall" exists since nucleus v2.17.0.
STEP_NAMES = ("bootstrap", "install", "startup", "run", "shutdown", "recover", "uninstall")
# "bootstraponrollback" (nucleus >= 2.12.0) is read on the Bootstrap step only, as the nucleus does.
STEP_OBJECT_KEYS = ("script", "timeout", "skipif", "setenv", "requiresprivilege", "bootstraponrollback")


@dataclass(frozen=True)
class LifecycleStep:
    script: str
    timeout: float | None = None  # None: the kernel applies the nucleus default for the step
    skipif: str | None = None
    setenv: dict[str, str] = field(default_factory=dict)
    requires_privilege: bool = False
    bootstrap_on_rollback: bool = False  # Bootstrap only: run this version's Bootstrap when rolled back to it


@dataclass
class LifecycleSection:
    """One lifecycle (or one selection's part of the global lifecycle): steps and Setenv."""

    steps: dict[str, LifecycleStep] = field(default_factory=dict)
    setenv: dict[str, str] = field(default_factory=dict)


# GenericExternalService.SKIP_COMMAND_REGEX, matched against the whole expression (Matcher.matches):
# lower-case operators only, one or more spaces (not tabs) before the argument, which may contain spaces.
# Java's "." stops at any line terminator (\n, \r, U+0085, U+2028, U+2029), hence the class.
_SKIPIF = re.compile("(exists|onpath) +([^\n\r\u0085\u2028\u2029]+)")
_SKIPIF_FORMS = "'onpath <executable>' or 'exists <file>', optionally negated with '!'"


class SkipifError(ValueError):
    """A Skipif the nucleus cannot evaluate: the step it guards fails (RunStatus.Errored)."""


def _java_trim(text: str) -> str:
    """String.trim(): strips every character <= U+0020 from both ends (not Unicode spaces)."""
    start, end = 0, len(text)
    while start < end and text[start] <= " ":
        start += 1
    while end > start and text[end - 1] <= " ":
        end -= 1
    return text[start:end]


def _home_detilde(text: str) -> str:
    """Exec.deTilde: a leading ``~/`` is the home directory (no other form)."""
    return str(Path.home() / text[2:]) if text.startswith("~/") else text


def nucleus_path_dirs(path_env: str | None) -> list[str]:
    """The directories the nucleus' ``which`` searches (Exec.addPathEntries + UnixExec.ensurePresent): the
    nucleus process' own PATH split on ``:`` or ``,`` (spaces after a separator dropped, ``~/`` expanded,
    duplicates removed), then /bin, /usr/bin, /sbin and /usr/sbin where they exist. A step's Setenv PATH
    plays no part."""
    dirs: list[str] = []
    if path_env:
        for entry in re.split(r"[:,] *", path_env):
            entry = _home_detilde(entry)
            if entry not in dirs:
                dirs.append(entry)
    for extra in ("/bin", "/usr/bin", "/sbin", "/usr/sbin"):
        if os.path.isdir(extra) and extra not in dirs:
            dirs.append(extra)
    return dirs


def _which(name: str, dirs: list[str]) -> str | None:
    """UnixExec.which: an absolute name must itself be executable; otherwise the first executable
    ``<dir>/<name>`` (Files.isExecutable, i.e. access(X_OK), so a searchable directory counts too)."""
    name = _home_detilde(name)
    if name.startswith("/"):
        return name if os.access(name, os.X_OK) else None
    for d in dirs:
        candidate = os.path.join(d, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _kernel_detilde(text: str, root: Path) -> str:
    """KernelCommandLine.deTilde: ``~/`` home, ``~root/`` the runtime root, ``~config/`` its config folder,
    ``~packages/`` its component store; each applied in turn, as the nucleus does."""
    text = _home_detilde(text)
    for prefix, base in (("~root/", root), ("~config/", root / "config"), ("~packages/", root / "packages")):
        if text.startswith(prefix):
            text = str(base / text[len(prefix):])
    return text


def should_skip(skipif: str | None, *, root: Path, path_env: str | None = None) -> bool:
    """Evaluate an (interpolated) Skipif as GenericExternalService.shouldSkip does.

    The expression is trimmed; a leading ``!`` negates it; the rest must match
    ``(exists|onpath) +(.+)`` exactly (case-sensitive). ``onpath X``: X is found by the nucleus' ``which``
    on the runtime's own PATH (``path_env``, default this process' PATH). ``exists F``: F exists after
    tilde expansion; a relative F is taken from the runtime's working directory, as the JVM's would be.
    Anything else raises SkipifError (the nucleus fails the step: INSTALL/STARTUP/RUN_CONFIG_NOT_VALID,
    or exit code 1 for Bootstrap).
    """
    if skipif is None:
        return False
    expr = _java_trim(skipif)
    negate = expr.startswith("!")
    if negate:
        expr = _java_trim(expr[1:])
    match = _SKIPIF.fullmatch(expr)
    if match is None:
        raise SkipifError(f"invalid Skipif {skipif!r}: the nucleus accepts {_SKIPIF_FORMS} (lower-case, "
                          "separated by spaces)")
    operator, argument = match.groups()
    if operator == "onpath":
        dirs = nucleus_path_dirs(os.environ.get("PATH") if path_env is None else path_env)
        found = _which(argument, dirs) is not None
    else:
        found = os.path.exists(_kernel_detilde(argument, root))
    return found != negate


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
                             "(expected Script, Timeout, Skipif, Setenv, RequiresPrivilege, BootstrapOnRollback)")
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
            # Kept as written: the nucleus checks its form only when the step runs (should_skip), after
            # interpolation, and a bad form fails that step, not the recipe.
            skipif = self.string(sk, join_path(path, sk_key))

        setenv: dict[str, str] = {}
        if "setenv" in fields and fields["setenv"][1] is not None:
            setenv = self.string_map(fields["setenv"][1], join_path(path, fields["setenv"][0]))

        privileged = False
        if "requiresprivilege" in fields:
            rp_key, rp = fields["requiresprivilege"]
            privileged = self.boolean(rp, join_path(path, rp_key))

        on_rollback = False
        if "bootstraponrollback" in fields and fields["bootstraponrollback"][1] is not None:
            br_key, br = fields["bootstraponrollback"]
            on_rollback = self.boolean(br, join_path(path, br_key))
        return LifecycleStep(script, timeout, skipif, setenv, privileged, on_rollback)
