"""What every config section shares: the strict pydantic base, YAML reading, ``--set`` overrides, and the
one formatter that turns a validation error into one line naming the dotted key and the value."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import UnetsegError


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not out:
            out = str(part)
        else:
            out += f".{part}"
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # pydantic puts union-member / validator tags such as 'int' or 'literal[...]' or
    # 'function-after[...]' into the location; they are not config keys.
    return tuple(p for p in loc if isinstance(p, int) or ("[" not in str(p) and str(p) not in ("int", "float", "str", "bool")))


def format_validation_error(err: ValidationError, source: str, prefix: tuple[str, ...] = ()) -> str:
    """One line for a pydantic ValidationError: ``source: 'a.b': reason (got value)[; ...]``.

    ``prefix`` is prepended to every key (``("data",)`` when a section is validated on its own).
    """
    parts = []
    seen = set()
    for e in err.errors():
        key = _dotted((*prefix, *_clean_loc(tuple(e["loc"]))))
        if key in seen:  # a union reports once per member; keep the first reason
            continue
        seen.add(key)
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        if e["type"] == "missing":
            parts.append(f"{key!r} is required")
        elif key and "input" in e and not isinstance(e["input"], dict):
            parts.append(f"{key!r}: {msg} (got {_short(e['input'])})")
        elif key:
            parts.append(f"{key!r}: {msg}")
        else:
            parts.append(msg)
    more = f" (+{len(parts) - 3} more)" if len(parts) > 3 else ""
    return f"{source}: " + "; ".join(parts[:3]) + more


def validate_section(model: type[BaseModel], data: Any, source: str, prefix: tuple[str, ...] = ()) -> Any:
    """``model.model_validate(data)``; a validation error becomes one UnetsegError line."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise UnetsegError(format_validation_error(err, source, prefix)) from None


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML file holding a mapping; a missing/unreadable/invalid file is one UnetsegError line naming it."""
    p = Path(path)
    if not p.is_file():
        raise UnetsegError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UnetsegError(f"config file {p} is not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UnetsegError(f"config file {p} cannot be read: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UnetsegError(f"config file {p} must hold a mapping (model:, data:, train:, loss:), got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings to a nested dict in place (values parsed as YAML scalars/flow)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise UnetsegError(f"--set {item!r}: expected KEY.SUB=VALUE, e.g. train.epochs=5")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise UnetsegError(f"--set {item!r}: value {raw!r} is not valid YAML") from None
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UnetsegError(f"--set {item!r}: {'.'.join(parts[: i + 1])} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return data
