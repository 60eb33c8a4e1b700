"""What every component's configuration model is built from: a pydantic base with Greengrass' camelCase keys,
the value types the suite's configuration uses (range-checked numbers that may arrive as strings, true/false,
id -> settings maps where null removes an entry), and errors that name the key path the user wrote.

    class HealthConfig(ComponentConfig):
        period_s: number(0.2, 3600) = 5.0          # the key is periodS; "5" is accepted, 0 is refused
    cfg = parse(HealthConfig, deployment_config)   # ConfigError("periodS: expected a number from 0.2 to 3600, got 0")
    app = ComponentApp(..., validate=validator(HealthConfig))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from .cpulist import parse_cpus

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration the component refuses; the text names the key path (`cameras.cam-1.detectFps: ...`)."""


class ConfigModel(BaseModel):
    """A part of a configuration: camelCase keys, unknown keys refused, immutable once parsed."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


# A Linux cpu list ("1", "0-3", "0,2-3") or a list of CPU numbers; absent/empty: every CPU (ggvision/component/cpus.py)
CpuList = Annotated[Any, BeforeValidator(parse_cpus), WithJsonSchema({
    "type": ["string", "array", "null"], "items": {"type": "integer", "minimum": 0},
    "description": "CPUs: a cpu list (\"1\", \"0-3\", \"0,2-3\") or a list of CPU numbers; empty: every CPU"})]


class ComponentConfig(ConfigModel):
    """A component's whole configuration. `accessControl` travels in the same tree (the nucleus reads it); the
    component ignores it. `cpus`: the CPUs the component's threads run on (applied by ComponentApp)."""

    access_control: Annotated[Any, Field(exclude=True)] = None
    cpus: CpuList = None


# -- value types ------------------------------------------------------------------------------------------

def _number(lo: float, hi: float) -> Callable[[Any], float]:
    def check(v: Any) -> float:
        if isinstance(v, str):  # Greengrass recommends numbers as strings in configuration
            try:
                v = float(v)
            except ValueError:
                raise ValueError(f"expected a number, got {v!r}") from None
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            raise ValueError(f"expected a number from {lo:g} to {hi:g}, got {v!r}")
        return float(v)

    return check


def number(lo: float, hi: float) -> Any:
    """A float within [lo, hi]; a numeric string is accepted (Greengrass configuration often carries strings)."""
    return Annotated[float, BeforeValidator(_number(lo, hi)),
                     WithJsonSchema({"type": ["number", "string"], "minimum": lo, "maximum": hi})]


def whole(lo: int, hi: int) -> Any:
    """An integer within [lo, hi], given as a whole number or a numeric string."""
    as_number = _number(lo, hi)

    def check(v: Any) -> int:
        f = as_number(v)
        if f != int(f):
            raise ValueError(f"expected a whole number, got {v!r}")
        return int(f)

    return Annotated[int, BeforeValidator(check),
                     WithJsonSchema({"type": ["integer", "string"], "minimum": lo, "maximum": hi})]


def _flag(v: Any) -> bool:
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {v!r}")
    return v


Flag = Annotated[bool, BeforeValidator(_flag), WithJsonSchema({"type": ["boolean", "string"],
                                                                "enum": [True, False, "true", "false"]})]
"""true/false, or the strings "true"/"false"."""


def _drop_null_entries(what: str) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if not isinstance(v, Mapping):
            raise ValueError(f"expected an object of {what} id -> settings")
        return {k: s for k, s in v.items() if s is not None}

    return check


def entries(model: type[M], what: str, key: Any = str) -> Any:
    """A map of id -> `model`. A deployment's merge cannot delete a key, so an id set to null is how an entry
    is removed: null entries are dropped before validation. `key` may be an annotated str that checks the ids
    (its errors are reported at the id: `cameras.bad id: ...`)."""
    return Annotated[dict[key, model], BeforeValidator(_drop_null_entries(what))]  # type: ignore[valid-type]


# -- parsing and errors ----------------------------------------------------------------------------------

def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith("function-") or part == "[key]":  # a validator step / a map's key check
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def error_at(loc: str | tuple[str, ...], msg: str) -> ValidationError:
    """An error at `loc` below the object being validated: a check that spans keys names the key to fix."""
    loc = (loc,) if isinstance(loc, str) else loc
    err = PydanticCustomError("invalid", "{msg}", {"msg": msg})
    return ValidationError.from_exception_data("configuration", [{"type": err, "loc": loc, "input": None}])


def describe(e: Any) -> str:
    """One problem of a ValidationError (an item of `.errors()`) as users read it: `key.path: what is wrong`."""
    loc = tuple(e["loc"])
    if e["type"] == "extra_forbidden":
        where = _path(loc[:-1])
        return f"{where}: unknown keys {loc[-1]}" if where else f"unknown configuration keys: {loc[-1]}"
    msg = str(e["msg"])
    if e["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    elif e["type"] == "missing":
        msg = "required"
    elif e["type"] == "assertion_error":
        msg = msg.removeprefix("Assertion failed, ")
    where = _path(loc)
    return f"{where}: {msg}" if where else msg


def explain(err: ValidationError) -> str:
    """One line per problem, `key.path: what is wrong`; unknown keys of one object are reported together."""
    lines: list[str] = []
    unknown: dict[str, list[str]] = {}
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        if e["type"] == "extra_forbidden":
            unknown.setdefault(_path(loc[:-1]), []).append(str(loc[-1]))
            continue
        lines.append(describe(e))
    for where, keys in unknown.items():
        keys = sorted(keys)
        lines.insert(0, f"{where}: unknown keys {', '.join(keys)}" if where else
                     f"unknown configuration keys: {', '.join(keys)}")
    return "; ".join(lines)


def parse(model: type[M], cfg: Mapping[str, Any] | None) -> M:
    """The configuration as `model`; ConfigError naming every bad key on bad input."""
    if cfg is not None and not isinstance(cfg, Mapping):
        raise ConfigError(f"expected a configuration object, got {type(cfg).__name__}")
    try:
        return model.model_validate(dict(cfg or {}))
    except ValidationError as e:
        raise ConfigError(explain(e)) from None


def validator(model: type[BaseModel]) -> Callable[[dict[str, Any]], str | None]:
    """The ComponentApp validator of a configuration model: why a configuration is refused, or None."""

    def validate(cfg: dict[str, Any]) -> str | None:
        try:
            parse(model, cfg)
        except ValueError as e:
            return str(e)
        return None

    return validate


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of a configuration as users write it (camelCase keys), for docs and editors."""
    return model.model_json_schema(by_alias=True, mode="validation")
