"""Sphinx configuration of the unetseg documentation (built by ``.ci/run`` with ``-W --keep-going``).

The API reference is generated from ``__all__`` (``_ext/apiref.py``), the CLI reference from the argparse parsers
(sphinx-argparse over :func:`unetseg.cli.build_parser`) and the config reference from the pydantic models
(``_ext/configref.py``): nothing in them is copied by hand. Intersphinx reads the small inventories shipped in
``_inventories/`` (``scripts/make_inventories.py``), because the build has no network.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

import unetseg  # noqa: E402

project = "unetseg"
author = "the unetseg authors"
copyright = "the unetseg authors"  # noqa: A001
release = version = unetseg.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "myst_parser",
    "sphinxarg.ext",
    "apiref",
    "configref",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_inventories", "_ext"]
nitpicky = True
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_inherit_docstrings = False  # torch's Module.forward docstring is not ours to publish
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autosummary_generate = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as a field list, whose types Sphinx parses whole

# offline: each inventory lists only the names these pages reference, with the real upstream addresses
# (scripts/make_inventories.py builds once with UNETSEG_DOCS_NO_INVENTORIES=1 to find those names)
intersphinx_mapping = {} if os.environ.get("UNETSEG_DOCS_NO_INVENTORIES") else {
    name: (url, str(DOCS / "_inventories" / f"{name}.inv"))
    for name, url in {
        "python": "https://docs.python.org/3/",
        "numpy": "https://numpy.org/doc/stable/",
        "torch": "https://docs.pytorch.org/docs/stable/",
        "rasterio": "https://rasterio.readthedocs.io/en/stable/",
        "zarr": "https://zarr.readthedocs.io/en/stable/",
        "pydantic": "https://docs.pydantic.dev/latest/",
    }.items()
}

html_theme = "furo"
html_title = f"unetseg {release}"
html_static_path: list[str] = []
