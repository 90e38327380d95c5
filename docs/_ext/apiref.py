"""Generate the Python API reference from ``__all__``: one page for ``unetseg`` and one for each subpackage that
exists and declares ``__all__``, written before Sphinx reads the sources (nothing lists module paths by hand, so a
package moved or added shows up by itself).

Every exported name is documented on the page of each package that exports it. Signatures and docstrings name
objects by the module that defines them (``unetseg.models.unet.UNet``); a ``missing-reference`` handler sends such
a reference to the page of the first package that exports the same object (``unetseg.UNet``). The unexported
objects that the public ones name in their signatures and docstrings (and those these name in turn) are documented
under their defining modules on one more generated page, ``internals``, so that every reference has a target.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import sys
import typing
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx

ROOT = "unetseg"
OUT = "reference/api"


def exported_packages(root: str = ROOT) -> dict[str, list[str]]:
    """``{package: its __all__}`` for ``root`` and each of its subpackages whose ``__init__`` assigns ``__all__``
    (read with :mod:`ast` first, so a package without one, such as a GUI plugin, is never imported)."""
    package = importlib.import_module(root)
    found = {root: list(package.__all__)}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        init = Path(package.__path__[0]) / info.name / "__init__.py"
        if info.ispkg and _assigns_all(init):
            name = f"{root}.{info.name}"
            found[name] = list(importlib.import_module(name).__all__)
    return found


def _assigns_all(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(node, (ast.Assign, ast.AnnAssign)) and "__all__" in ast.unparse(node).split("=")[0]
               for node in tree.body)


def _directive(obj: Any) -> str:
    if inspect.isclass(obj):
        return "autoclass"
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return "autofunction"
    return "autodata"


def page(package: str, names: list[str], canonical: dict[int, str]) -> str:
    """The reST of one package's page: its docstring, a summary table of every name in ``__all__``, then the
    documentation of each, in ``__all__`` order; a re-export of an object documented on an earlier page is linked
    there (one description per object: Sphinx indexes each by the module that defines it)."""
    module = importlib.import_module(package)
    title = f"``{package}``"
    lines = [title, "=" * len(title), "", f".. automodule:: {package}", "   :no-members:", "",
             f".. currentmodule:: {package}", "", ".. autosummary::", ""]
    lines += [f"   {name}" for name in names]
    lines.append("")
    for name in names:
        obj = getattr(module, name)
        if canonical[id(obj)] == f"{package}.{name}":
            lines += [f".. {_directive(obj)}:: {name}", ""]
    again = [name for name in names if canonical[id(getattr(module, name))] != f"{package}.{name}"]
    if again:
        lines += ["Documented with the package that exports them first: " + ", ".join(
            f":py:obj:`{name} <{canonical[id(getattr(module, name))]}>`" for name in again) + ".", ""]
    return "\n".join(lines)


def write_pages(app: Sphinx) -> None:
    out = Path(app.srcdir) / OUT
    out.mkdir(parents=True, exist_ok=True)
    packages = exported_packages()
    index = ["Python API", "==========", "",
             "Generated from ``__all__`` of ``unetseg`` and of each subpackage that declares one.", "",
             ".. toctree::", "   :maxdepth: 1", ""]
    index += [f"   {package}" for package in packages] + ["   internals"]
    _write(out / "index.rst", "\n".join(index) + "\n")
    canonical = canonical_names(packages)
    for package, names in packages.items():
        _write(out / f"{package}.rst", page(package, names, canonical))
    found = internals(packages, canonical)
    _write(out / "internals.rst", internals_page(found, set(packages)))
    expected = {out / "index.rst", out / "internals.rst"} | {out / f"{p}.rst" for p in packages}
    for stale in set(out.glob("*.rst")) - expected:
        stale.unlink()
    app.env.unetseg_canonical = canonical  # type: ignore[attr-defined]
    by_name: dict[str, set[str]] = {}
    for name in [*canonical.values(), *(n for n, o in found.items() if not inspect.ismodule(o))]:
        by_name.setdefault(name.rsplit(".", 1)[1], set()).add(name)
    app.env.unetseg_short = {k: v.pop() for k, v in by_name.items() if len(v) == 1}  # type: ignore[attr-defined]


def _write(path: Path, text: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:  # untouched pages are not re-read
        path.write_text(text, encoding="utf-8")


def canonical_names(packages: dict[str, list[str]]) -> dict[int, str]:
    """``id(object) -> "package.name"`` of the first package (in page order) exporting each object."""
    found: dict[int, str] = {}
    for package, names in packages.items():
        module = importlib.import_module(package)
        for name in names:
            found.setdefault(id(getattr(module, name)), f"{package}.{name}")
    return found


_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):`~?([\w.]+)`|^\s*Raises:\s*\n\s+([\w.]+):", re.M)


def _full_name(obj: Any, path: str) -> str | None:
    """Where ``obj`` (found at ``path``) is documented as an internal: its module's name, ``module.Name`` for a
    module-level class or function, ``path`` for a module-level constant; None for members and foreign objects."""
    if inspect.ismodule(obj):
        name = obj.__name__
    elif inspect.isclass(obj) or inspect.isfunction(obj):
        name = f"{obj.__module__}.{obj.__qualname__}" if "." not in obj.__qualname__ else ""
    elif isinstance(obj, typing.TypeVar):
        return None
    else:
        parent = path.rpartition(".")[0]
        name = path if parent in sys.modules else ""
    return name if name.startswith(f"{ROOT}.") else None


def _mentions(obj: Any) -> list[tuple[str, Any]]:
    """``(where documented, object)`` of the unetseg objects ``obj``'s docstring names in a role, the unetseg
    classes in its type hints, and its unetseg base classes."""
    out: list[tuple[str, Any]] = []
    home = obj if inspect.ismodule(obj) else inspect.getmodule(obj)
    for target in (role or raises for role, raises in _ROLE.findall(inspect.getdoc(obj) or "")):
        for path in ([] if target.startswith(f"{ROOT}.") else [f"{home.__name__ if home else ROOT}.{target}"]) + [
                target]:
            try:
                out.append((path, _lookup(path)))
                break
            except (LookupError, AttributeError, ValueError):
                continue
    for func in [obj, getattr(obj, "__init__", None)] if inspect.isclass(obj) else [obj]:
        try:
            hints = typing.get_type_hints(func)
        except Exception:  # noqa: BLE001  autodoc shows such annotations as written: find their names
            words = re.findall(r"[A-Za-z_]\w*", " ".join(map(str, getattr(func, "__annotations__", {}).values())))
            hints = {w: getattr(home, w) for w in words if inspect.isclass(getattr(home, w, None))}
        out += [("", c) for hint in hints.values() for c in _classes_in(hint)]
    if inspect.isclass(obj):
        out += [("", base) for base in obj.__bases__]
    return [(name, o) for path, o in out if (name := _full_name(o, path))]


def _classes_in(hint: Any) -> list[Any]:
    if inspect.isclass(hint):
        return [hint]
    return [c for arg in typing.get_args(hint) for c in _classes_in(arg)]


def _members(obj: Any) -> list[Any]:
    if not inspect.isclass(obj):
        return [obj]
    return [obj] + [getattr(obj, n) for n in vars(obj) if not n.startswith("_") and callable(getattr(obj, n))]


def internals(packages: dict[str, list[str]], canonical: dict[int, str]) -> dict[str, Any]:
    """Unexported unetseg objects reachable from the exported ones through docstrings, type hints and bases,
    by the name each is documented under."""
    queue = [getattr(importlib.import_module(p), n) for p, names in packages.items() for n in names]
    queue += [importlib.import_module(p) for p in packages]
    seen = {id(o) for o in queue}
    found: dict[str, Any] = {}
    while queue:
        for member in _members(queue.pop()):
            for name, obj in _mentions(member):
                if id(obj) not in seen:
                    seen.add(id(obj))
                    if id(obj) not in canonical:
                        found[name] = obj
                        queue.append(obj)
    return found


def internals_page(found: dict[str, Any], packages: set[str]) -> str:
    lines = ["Internals", "=========", "",
             "Objects outside ``__all__`` that the public API names in its signatures and docstrings. They may",
             "change without notice; they are here so that every reference in this site has a target.", ""]
    modules = sorted({n if inspect.ismodule(o) else n.rpartition(".")[0] for n, o in found.items()})
    for module in modules:
        lines += [f"``{module}``", "-" * (len(module) + 4), ""]
        if module in found:
            lines += [f".. automodule:: {module}", "   :no-members:", ""]
        elif module not in packages:
            lines += [f".. py:module:: {module}", ""]
        lines += [f".. currentmodule:: {module}", ""]
        for name in sorted(n for n, o in found.items() if not inspect.ismodule(o) and n.rpartition(".")[0] == module):
            lines += [f".. {_directive(found[name])}:: {name.rpartition('.')[2]}", ""]
    return "\n".join(lines)


def _lookup(target: str) -> Any:
    parts = target.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except (ImportError, TypeError):  # not a module, or an empty (relative) name
            continue
        for attr in parts[split:]:
            obj = getattr(obj, attr)
        return obj
    raise LookupError(target)


def resolve_defining_module(app: Sphinx, env: Any, node: Any, contnode: nodes.Element) -> nodes.Element | None:
    """Resolve what Sphinx cannot: ``unetseg.x.y.Name`` (or ``.member``) goes to where ``Name`` is documented; a
    short ``Name`` or ``Name.member`` in a docstring to the one documented object of that name; a member without
    a description of its own (``:attr:`written``` inside a class's docstring) to its class."""
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py":
        return None
    first, _, rest = target.partition(".")
    short = getattr(env, "unetseg_short", {})
    owner = ".".join(p for p in (node.get("py:module"), node.get("py:class")) if p)
    if first in short:
        full = short[first] + (f".{rest}" if rest else "")
    elif target.startswith(f"{ROOT}."):
        full = target
    elif first == "np":  # a signature autodoc could only show as written
        from sphinx.ext.intersphinx import missing_reference

        node["reftarget"] = f"numpy.{rest}"
        return missing_reference(app, env, node, contnode)
    elif target.startswith("_"):  # a private class in a signature: its name, as written
        return contnode
    elif node.get("py:class") and not rest:
        full = f"{owner}.{target}"
    elif not rest and node.get("py:module"):  # a summary line out of its class: the one such member in the module
        suffix, prefix = f".{target}", f"{node['py:module']}."
        names = [n for n in env.get_domain("py").objects if n.startswith(prefix) and n.endswith(suffix)]
        if len(names) != 1:
            return None
        full = names[0]
    else:
        return None
    return _resolve(app, env, node, contnode, full)


def _resolve(app: Sphinx, env: Any, node: Any, contnode: nodes.Element, full: str) -> nodes.Element | None:
    canonical = getattr(env, "unetseg_canonical", {})
    domain = env.get_domain("py")
    parts = full.split(".")
    for split in range(len(parts), 1, -1):  # the longest prefix that is a documented object, then its members
        try:
            obj = _lookup(".".join(parts[:split]))
        except (LookupError, AttributeError):
            continue
        if isinstance(obj, typing.TypeVar):  # a signature's placeholder: its name, as written
            return contnode
        names = [canonical[id(obj)]] if id(obj) in canonical else []
        names.append(".".join(parts[:split]))
        for name in names:  # the member itself, else its owner
            for candidate in [".".join([name, *parts[split:]]), name]:
                found = domain.resolve_xref(env, node["refdoc"], app.builder, "obj", candidate, node, contnode)
                if found is not None:
                    return found
    return None


def pydantic_signature(app: Sphinx, what: str, name: str, obj: Any, options: Any, signature: str | None,
                       return_annotation: str | None) -> tuple[str | None, str | None] | None:
    """A config model's keyword signature repeats its fields, which the config reference lists: leave it out. A
    dataclass field's ``<factory>`` default is shown as ``...``."""
    from pydantic import BaseModel

    if what == "class" and inspect.isclass(obj) and issubclass(obj, BaseModel):
        return "", ""
    if signature and "=<factory>" in signature.replace(" ", ""):  # a dataclass's default_factory: not Python, so
        return re.sub(r"=\s*<factory>", "=...", signature), return_annotation or ""  # Sphinx could not parse it
    return None


def returns_prose(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """unetseg's ``Returns:`` sections are prose (or ``name: meaning`` lines), not napoleon's ``type: text``: show
    them under a rubric as written (dedented, so that they are not taken for the rubric's content)."""
    for i, line in enumerate(lines):
        if line.strip() == "Returns:":
            indent = len(line) - len(line.lstrip())
            end = i + 1
            while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent):
                end += 1
            body = lines[i + 1:end]
            cut = min((len(t) - len(t.lstrip()) for t in body if t.strip()), default=indent)
            lines[i:end] = [line.replace("Returns:", ".. rubric:: Returns"), ""] + [
                " " * indent + t[cut:] if t.strip() else "" for t in body] + [""]
            return


def property_prose(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Napoleon reads a property's first line ``A: B`` as ``type: description``; these docstrings are prose."""
    if what == "property" and lines and ":" in lines[0]:
        lines.insert(0, "\\ ")  # an escaped space: an empty first line without a colon (napoleon skips blank ones)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", write_pages)
    app.connect("autodoc-process-signature", pydantic_signature)
    app.connect("autodoc-process-docstring", property_prose, priority=400)
    app.connect("autodoc-process-docstring", returns_prose, priority=400)  # before napoleon's (500)
    app.connect("missing-reference", resolve_defining_module)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
