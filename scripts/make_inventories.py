"""Write the small intersphinx inventories that the docs build reads offline: ``docs/_inventories/<project>.inv``.

Why: the docs are built with every cross-reference resolved (``nitpicky``, warnings as errors), and names of numpy,
torch, rasterio, zarr, pydantic and the standard library appear in signatures and pages; intersphinx would resolve them from
each project's ``objects.inv``, but the build has no network (CI, and every machine here, reach package registries
only). So this script builds the docs once without inventories, collects the names that no page resolves, and
writes, per project, an inventory of exactly those names pointing at their real upstream pages (URL rules below;
the base address of each project is ``intersphinx_mapping`` in ``docs/conf.py``). Rerun it when a page or a
signature starts naming a new outside object::

    uv run python scripts/make_inventories.py

Names of no outside project (unetseg's own, or typos) are listed as left to the build, which fails on them.
"""
from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import sphobjinv as soi

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MISSING = re.compile(r"WARNING: py:(\w+) reference target not found: ([\w.]+) \[ref")
ROLES = {"func": "function", "meth": "method", "mod": "module", "exc": "exception", "attr": "attribute"}
PYTHON_TYPES = {"dict", "list", "tuple", "set", "frozenset", "str", "bytes", "int", "float", "complex", "bool",
                "range", "memoryview", "bytearray"}
# torch pages that are not generated/<name>.html
TORCH_PAGES = {"torch.Tensor": "tensors.html", "torch.device": "tensor_attributes.html",
               "torch.dtype": "tensor_attributes.html", "torch.nn.modules.module.Module": "generated/torch.nn.Module.html"}


def project_of(name: str) -> str | None:
    top = name.split(".")[0]
    if top in ("numpy", "torch", "rasterio", "zarr", "pydantic"):
        return top
    if (top in sys.stdlib_module_names and "." in name) or name in PYTHON_TYPES:
        return "python"
    return None


def uri(project: str, name: str, role: str) -> str:
    """The page of ``name`` in its project's documentation (relative to the project's base address)."""
    if project == "python":
        if name in PYTHON_TYPES:
            return f"library/stdtypes.html#{name}" if name not in ("int", "float", "bool") else f"library/functions.html#{name}"
        module = _module_part(name)
        return f"library/{module}.html#{name}" if role != "module" else f"library/{name}.html#module-{name}"
    if project == "numpy":
        return f"reference/generated/{name}.html#{name}"
    if project == "torch":
        return f"{TORCH_PAGES.get(name, f'generated/{name}.html')}#{name.replace('nn.modules.module.', 'nn.')}"
    if project == "rasterio":
        return f"api/{_module_part(name)}.html#{name}"
    if project == "pydantic":
        return f"api/base_model/#{name.replace('main.', '')}"
    return f"api/zarr/index.html#{name}"  # zarr 3 documents its public names on the package's page


def _module_part(name: str) -> str:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            importlib.import_module(".".join(parts[:cut]))
            return ".".join(parts[:cut])
        except ImportError:
            continue
    return parts[0]


def role_of(name: str, role: str) -> str:
    if role != "obj":
        return ROLES.get(role, role)
    try:
        obj = importlib.import_module(name)
        return "module"
    except ImportError:
        module = _module_part(name)
        obj = importlib.import_module(module)
        for attr in name[len(module) + 1:].split("."):
            obj = getattr(obj, attr)
    return "class" if inspect.isclass(obj) else "function" if callable(obj) else "data"


def missing_names() -> set[tuple[str, str]]:
    """``(role, name)`` of every outside reference a build without inventories leaves unresolved."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "warnings.txt"
        env = {**os.environ, "UNETSEG_DOCS_NO_INVENTORIES": "1"}
        subprocess.run([sys.executable, "-m", "sphinx", "-b", "dummy", "-q", "-E", "-w", str(log), str(DOCS),
                        str(Path(tmp) / "out")], env=env, check=False, stderr=subprocess.DEVNULL)
        text = log.read_text()
    return {(role, name) for role, name in MISSING.findall(text) if not name.startswith("unetseg")}


def main() -> None:
    found: dict[str, soi.Inventory] = {}
    for role, name in sorted(missing_names(), key=lambda rn: rn[1]):
        project = project_of(name)
        if project is None:
            print(f"left to the build (no outside project): {role} {name}")
            continue
        inv = found.setdefault(project, soi.Inventory())
        inv.project, inv.version = project, "stable"
        kind = role_of(name, role)
        if any(o.name == name and o.role == kind for o in inv.objects):
            continue
        inv.objects.append(soi.DataObjStr(name=name, domain="py", role=kind, priority="1",
                                          uri=uri(project, name, kind), dispname="-"))
    out = DOCS / "_inventories"
    out.mkdir(exist_ok=True)
    for project in ("python", "numpy", "torch", "rasterio", "zarr", "pydantic"):
        inv = found.get(project) or soi.Inventory()
        inv.project, inv.version = project, "stable"
        soi.writebytes(out / f"{project}.inv", soi.compress(inv.data_file(contract=True)))
        print(f"{project}: {len(inv.objects)} names")


if __name__ == "__main__":
    main()
