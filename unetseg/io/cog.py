"""Cloud Optimized GeoTIFF: a streamed tiled TIFF (full resolution, then its pyramid) re-assembled in COG order.

:class:`unetseg.io.tiff_writer.TiffTileWriter` streams the full-resolution tiles into a temporary tiled BigTIFF
and builds the pyramid from it, as for every TIFF map; with ``cog=True`` that file is then copied by GDAL's COG
driver (through rasterio) into the output's own temporary file: the ghost header, every overview's tiles before
the full-resolution ones (smallest first), as range-reading clients (QGIS, GDAL's /vsicurl/, titiler) expect.
The existing overviews are reused, not recomputed, and GDAL's block cache is capped (:data:`GDAL_CACHE_MB`), so
memory does not grow with the image. CRS, transform, nodata, the colour map and TIFF tags travel with the copy.

rasterio is in the ``geo`` extra; without it the maps stay plain tiled GeoTIFFs (:func:`cog_available`).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UnetsegError
from .geo import GEO_EXTRA

GDAL_CACHE_MB = 64  # GDAL's block cache while copying (its default is 5 % of the machine's RAM)
COG_BLOCK = 256  # tile side of the COG, as the streamed TIFF's


def cog_available() -> bool:
    """Whether rasterio (GDAL with its COG driver, GDAL >= 3.1) can be imported."""
    try:
        import rasterio  # noqa: F401
    except ImportError:
        return False
    return True


# a placement GDAL reads as a geotransform: ModelTiepoint, ModelTransformation (a pixel scale alone is not one, and
# GDAL's COG copy would drop it; such maps stay plain tiled TIFFs with the tags copied verbatim)
GEOREFERENCE_TAGS = {33922, 34264}


def georeferenced(geotags: list[tuple]) -> bool:
    """Whether tifffile ``extratags`` ``geotags`` place the image on the ground (a tiepoint or a transformation)."""
    return any(tag[0] in GEOREFERENCE_TAGS for tag in geotags)


def require_cog(what: str) -> None:
    """One line naming ``what`` when rasterio is missing."""
    if not cog_available():
        raise UnetsegError(f"{what} writes Cloud Optimized GeoTIFFs with rasterio (GDAL): {GEO_EXTRA}")


def copy_as_cog(source: str | Path, target: str | Path, *, compression: str = "DEFLATE") -> None:
    """Copy the tiled TIFF ``source`` (with its overviews, if any) to ``target`` as a Cloud Optimized GeoTIFF.

    The overviews of ``source`` (SubIFDs or IFDs, as GDAL reads them) are used as they are; ``target`` has
    ``COG_BLOCK`` x ``COG_BLOCK`` tiles, ``compression`` (GDAL's name, default DEFLATE: zlib, as the streamed
    TIFF), BigTIFF when it could pass 4 GiB. Raises whatever rasterio raises on a failed copy.
    """
    import rasterio
    import rasterio.shutil

    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        rasterio.shutil.copy(str(source), str(target), driver="COG", BLOCKSIZE=COG_BLOCK, COMPRESS=compression,
                             OVERVIEWS="FORCE_USE_EXISTING", BIGTIFF="IF_SAFER")


def verify_cog(shape: tuple[int, ...], dtype: Any, levels: int = 1) -> Callable[[Path], None]:
    """A check for :func:`unetseg.io.atomic.atomic_path`: GDAL reads the file as a COG (its ``LAYOUT`` is
    ``COG``) of ``shape`` (H, W[, C]) and ``dtype`` with ``levels - 1`` overviews."""
    def check(path: Path) -> None:
        import rasterio

        with rasterio.open(path) as src:
            read = (src.height, src.width, *((src.count,) if len(shape) == 3 else ()))
            if read != tuple(shape) or np.dtype(src.dtypes[0]) != np.dtype(dtype):
                raise ValueError(f"read back {read} {src.dtypes[0]}, wrote {tuple(shape)} {np.dtype(dtype)}")
            if len(src.overviews(1)) != levels - 1:
                raise ValueError(f"read back {len(src.overviews(1))} overviews, wrote {levels - 1}")
            if src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") != "COG":
                raise ValueError("GDAL does not read it as a Cloud Optimized GeoTIFF")
    return check
