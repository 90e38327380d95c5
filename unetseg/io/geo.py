"""Where an input's pixels lie in the world: its affine transform and coordinate reference system, read with
rasterio (GDAL) from GeoTIFF tags. Polygons and object tables of a georeferenced input use them, so GDAL and
QGIS place the outputs where the image is."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import UnetsegError

GEO_EXTRA = "pip install 'unetseg[geo]'"


@dataclass(frozen=True)
class Georef:
    """``transform``: (a, b, c, d, e, f) of x = a*col + b*row + c, y = d*col + e*row + f, in pixel-corner
    coordinates (rasterio's and GDAL's convention); ``crs_wkt``: the CRS as WKT; ``epsg``: its EPSG code when
    it has one."""

    transform: tuple[float, float, float, float, float, float]
    crs_wkt: str | None
    epsg: int | None

    def world(self, col: float, row: float) -> tuple[float, float]:
        a, b, c, d, e, f = self.transform
        return a * col + b * row + c, d * col + e * row + f


def require_geo(what: str) -> None:
    """One line when rasterio/shapely/pyogrio (the ``geo`` extra) are missing."""
    try:
        import pyogrio  # noqa: F401
        import rasterio  # noqa: F401
        import shapely  # noqa: F401
    except ImportError:
        raise UnetsegError(f"{what} needs rasterio, shapely and pyogrio: {GEO_EXTRA}") from None


def georeference(path: str | os.PathLike, level: int = 0) -> Georef | None:
    """The georeference of a GeoTIFF input at pyramid ``level`` (the transform scaled by the level's
    reduction), or None for inputs without one (plain TIFFs, PNG, zarr, slides) or without rasterio."""
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    try:
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
    except ImportError:
        return None
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                if src.crs is None and src.transform.is_identity:
                    return None
                transform = src.transform * rasterio.Affine.scale(2**level)  # level n: pixels 2**n times larger
                crs = src.crs
                return Georef(tuple(transform)[:6], None if crs is None else crs.to_wkt(),
                              None if crs is None else crs.to_epsg())
    except RasterioIOError:
        return None
