"""``unetseg-config`` directive: the config reference generated from the pydantic models of ``unetseg.config``.

``.. unetseg-config:: unetseg.config.RunConfig`` (in reST; from Markdown inside an ``eval-rst`` block) walks ``model_fields`` from the given model down through every
nested section (a field whose type is itself a model) and writes one table per section: each key, its type, its
default, its bounds and what it means (the field's description, else the comment written beside or above the field
in the source). The model section takes a registered model's constructor arguments, listed from their signatures.
"""
from __future__ import annotations

import importlib
import inspect
import re
import typing
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "length >=", "max_length": "length <="}


def sections(root: type[BaseModel], prefix: str = "") -> list[tuple[str, type[BaseModel]]]:
    """``(dotted key, model)`` for ``root`` and every model nested in its fields, depth first, each once."""
    found = [(prefix, root)]
    for name, field in root.model_fields.items():
        for model in _models_in(field.annotation):
            key = f"{prefix}.{name}" if prefix else name
            if all(m is not model for _, m in found):
                found += [s for s in sections(model, key) if all(m is not s[1] for _, m in found)]
    return found


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def type_text(annotation: Any) -> str:
    if inspect.isclass(annotation) and not typing.get_args(annotation):
        return annotation.__name__
    text = repr(annotation).replace("typing.", "").replace("NoneType", "None")
    return re.sub(r"[\w.]+\.(\w+)", r"\1", text)  # unetseg.config.data.ClassSpec -> ClassSpec


def default_text(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    return "(section)" if isinstance(value, BaseModel) else repr(value)


def bounds_text(field: FieldInfo) -> str:
    out = []
    for item in field.metadata:
        for attr, sign in _BOUNDS.items():
            if getattr(item, attr, None) is not None:
                out.append(f"{sign} {getattr(item, attr)}")
    return ", ".join(out)


def source_comments(model: type[BaseModel]) -> dict[str, str]:
    """The comment beside each field's line in the class body, or the comment lines right above it."""
    try:
        lines = inspect.getsource(model).splitlines()
    except (OSError, TypeError):
        return {}
    found: dict[str, str] = {}
    above: list[str] = []
    for line in lines:
        stripped = line.strip()
        match = re.match(r"(\w+)\s*:[^#]*(#\s*(.*))?$", stripped)
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# "))
            continue
        if match and match.group(1) in model.model_fields:
            found[match.group(1)] = match.group(3) or " ".join(above)
        above = []
    return found


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'") if text else ""


def section_rst(key: str, model: type[BaseModel]) -> list[str]:
    title = f"``{key}``" if key else "Top level"
    lines = [title, "-" * len(title), ""]
    doc = inspect.getdoc(model)
    if doc and doc != inspect.getdoc(BaseModel):  # its first paragraph; the whole docstring is in the API pages
        lines += [*doc.split("\n\n")[0].splitlines(), ""]
    comments = source_comments(model)
    lines += [".. list-table::", "   :header-rows: 1", "   :widths: 18 22 14 12 34", "",
              "   * - key", "     - type", "     - default", "     - bounds", "     - meaning"]
    for name, field in model.model_fields.items():
        meaning = field.description or comments.get(name, "")
        cells = [f"``{key + '.' if key else ''}{name}``", f"``{type_text(field.annotation)}``",
                 f"``{default_text(field)}``", _cell(bounds_text(field)), _cell(meaning)]
        lines += [f"   * - {cells[0]}"] + [f"     - {c}" for c in cells[1:]]
    lines.append("")
    if model.model_config.get("extra") == "allow":
        lines += model_arguments_rst(key)
    return lines


def model_arguments_rst(key: str) -> list[str]:
    """The constructor arguments each registered model takes (``model.<argument>`` keys), from the signatures."""
    from unetseg.models.registry import _CLASSES, _FIXED, list_models

    lines = [f"Any other ``{key}.*`` key is a constructor argument of the model named by ``{key}.name``:", "",
             ".. list-table::", "   :header-rows: 1", "   :widths: 20 80", "", "   * - ``name``",
             "     - arguments (default)"]
    for name in list_models():
        params = inspect.signature(_CLASSES[name].__init__).parameters.values()
        args = [f"``{p.name}`` ({'required' if p.default is p.empty else repr(p.default)})" for p in params
                if p.name != "self" and p.name not in _FIXED[name] and p.kind is not p.VAR_KEYWORD]
        if any(p.kind is p.VAR_KEYWORD for p in params):
            args.append("and the library's own keyword arguments")
        lines += [f"   * - ``{name}``", f"     - {', '.join(args)}"]
    return [*lines, ""]


class ConfigReference(SphinxDirective):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        module, _, name = self.arguments[0].rpartition(".")
        root = getattr(importlib.import_module(module), name)
        rst = [line for key, model in sections(root) for line in section_rst(key, model)]
        container = nodes.section()
        nested_parse_with_titles(self.state, StringList(rst, source=f"<{self.arguments[0]}>"), container)
        return container.children


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("unetseg-config", ConfigReference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
