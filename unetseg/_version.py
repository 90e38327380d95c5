"""The package version, read from the installed distribution's metadata: pyproject.toml's ``version`` is its one
source (``unetseg --version``, checkpoints' ``unetseg_version``, predict's summary)."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    """The installed unetseg's version (``"0.1.0"``), or ``"0+unknown"`` when the package runs from a source tree
    that was never installed (no metadata to read)."""
    try:
        return version("unetseg")
    except PackageNotFoundError:
        return "0+unknown"


__version__ = package_version()
