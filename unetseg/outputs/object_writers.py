"""The object kinds: ``instances`` (the object id map), ``objects`` (a table, one row per object) and
``geojson``/``gpkg`` (the objects' outlines as polygons, for QuPath, QGIS and GDAL).

Each gets the final object ids band by band in a second pass (:class:`~unetseg.outputs.outputset.OutputSet`),
so none holds the map: the id map is a streamed tiled TIFF, the polygons are traced per band
(``rasterio.features.shapes``, pixel-exact) and an object's pieces are merged (``shapely``) as soon as the
bands have passed its last row. Polygons are in pixel coordinates (QuPath's: x = column, y = row, from the
top-left corner of the top-left pixel) for plain images, in the input's CRS for GeoTIFFs.
"""
from __future__ import annotations

import csv
import json
import math
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_path
from ..io.geo import Georef, georeference, require_geo
from ..io.ome_zarr_labels import OmeZarrLabelsWriter
from ..io.tiff_writer import TiffTileWriter
from ..objects.merge import ObjectTable
from ..objects.separate import ObjectRule
from .kinds import Finished, KindWriter, OutputKind, register_output_kind

UNIT_ABBREVIATIONS = {"micrometer": "um", "nanometer": "nm", "millimeter": "mm", "centimeter": "cm", "meter": "m",
                      "metre": "m", "degree": "deg", "foot": "ft"}


def object_columns(table: ObjectTable, spec: Any, georef: Georef | None) -> dict[str, np.ndarray]:
    """The columns of the object table, in order: id, class, area in px (and in the input's pixel unit
    squared), centroid in px (and in world coordinates for georeferenced inputs), bounding box (inclusive),
    mean probability, whether the object touches the image edge."""
    names = spec.class_table.names
    cols: dict[str, np.ndarray] = {
        "id": np.arange(1, len(table) + 1),
        "class": np.array([names[c] if 0 <= c < len(names) else f"class{c}" for c in table.class_id], object),
        "area_px": table.area}
    size, unit = spec.source.pixel_size, spec.source.unit
    if size is not None:
        cols[f"area_{UNIT_ABBREVIATIONS.get(unit or '', unit or 'unit')}2"] = table.area * size[0] * size[1]
    cols["centroid_row"] = table.centroid_row
    cols["centroid_col"] = table.centroid_col
    if georef is not None:
        x, y = georef.world(table.centroid_col + 0.5, table.centroid_row + 0.5)
        cols["centroid_x"], cols["centroid_y"] = x, y
    cols.update(min_row=table.min_row, min_col=table.min_col, max_row=table.max_row, max_col=table.max_col,
                mean_probability=table.mean_prob, touches_edge=table.touches_edge)
    return cols


def _plain(value: Any) -> Any:
    """A table cell as JSON/CSV wants it: Python numbers, None for NaN."""
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else round(float(value), 6)
    return value


@register_output_kind("instances", part="instances", suffixes=(".tif", ".tif"), needs="objects", dask=True,
                      dask_suffix=".ome.zarr",
                      help="object id map (uint16, or uint32 past 65535 objects; 0 = none): tiled TIFF, or OME-Zarr "
                           "labels (uint32) with --dask")
class InstancesWriter(KindWriter):
    """The object ids as a tiled TIFF (with the input's GeoTIFF tags, a pyramid and its pixel size), or, when
    Dask workers write them chunk by chunk, as OME-Zarr labels (:attr:`target`)."""

    def __enter__(self) -> InstancesWriter:
        self._stack = ExitStack()
        self._sink: TiffTileWriter | None = None
        self.target = None
        if self.spec.dask:
            zarr_writer = OmeZarrLabelsWriter(self.path, self.spec.shape, np.uint32, self.spec.chunks,
                                              pixel_size=self.spec.source.pixel_size, unit=self.spec.source.unit)
            self.target = self._stack.enter_context(zarr_writer).level0
        return self

    def start_objects(self, table: ObjectTable) -> None:
        if self.spec.dask:  # the workers wrote the ids into the target
            return
        dtype = np.uint16 if len(table) <= np.iinfo(np.uint16).max else np.uint32
        self._sink = self._stack.enter_context(TiffTileWriter(
            self.path, self.spec.shape, dtype, extratags=self.spec.source.geotags, levels=self.spec.tiff_levels,
            resolution=self.spec.tiff_resolution))

    def write_objects(self, start: int, ids: np.ndarray) -> None:
        if self._sink is not None:
            self._sink[start : start + len(ids)] = ids

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._stack.__exit__(exc_type, exc, tb)


@register_output_kind("objects", part="objects", suffixes=(".csv", ".csv"), needs=("objects", "probs"), dask=True,
                      help="CSV, one row per object: id, class, area, centroid, bounding box, mean probability")
class ObjectsTableWriter(KindWriter):
    def finish(self, done: Finished) -> list[Path]:
        table = done.tables[self.object_rule()]
        georef = georeference(self.spec.source.path, self.spec.level)
        cols = object_columns(table, self.spec, georef)

        def check(tmp: Path) -> None:
            with open(tmp, newline="") as f:
                lines = sum(1 for _ in f)
            if lines != len(table) + 1:
                raise ValueError(f"the table reads back with {lines - 1} rows, wrote {len(table)}")
        with atomic_path(self.path, verify=check) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(cols)
            for row in zip(*cols.values(), strict=True):
                writer.writerow(["" if v is None else v for v in map(_plain, row)])
        return [self.path]


class PolygonTracer:
    """Outlines of objects from their id map, fed band by band: each band's pieces are traced, and an object's
    pieces merged once its last row has passed (:meth:`add` returns those complete objects, ordered by last row
    then id)."""

    def __init__(self, table: ObjectTable, georef: Georef | None) -> None:
        from rasterio import Affine

        self.table, self.pending = table, {}
        self.base = Affine(*georef.transform) if georef is not None else Affine.identity()

    def add(self, start: int, ids: np.ndarray) -> list[tuple[int, Any]]:
        from rasterio import Affine
        from rasterio.features import shapes
        from shapely.geometry import shape

        transform = self.base * Affine.translation(0, start)
        values = ids.astype(np.int32, copy=False)
        for geometry, value in shapes(values, mask=values > 0, connectivity=4, transform=transform):
            self.pending.setdefault(int(value), []).append(shape(geometry))
        return self._complete(start + len(ids))

    def _complete(self, passed: int) -> list[tuple[int, Any]]:
        """Objects whose last row is above ``passed``, by last row then id: an order that does not depend on how
        the map was cut into bands. Each outline in a canonical form (collinear vertices at band seams removed,
        rings normalised), so the file does not depend on it either."""
        from shapely import normalize, simplify, union_all

        done = sorted((i for i in self.pending if self.table.max_row[i - 1] < passed),
                      key=lambda i: (self.table.max_row[i - 1], i))
        return [(i, normalize(simplify(union_all(self.pending.pop(i)), 0))) for i in done]

    def rest(self) -> list[tuple[int, Any]]:
        return self._complete(np.iinfo(np.int64).max)


class PolygonWriter(KindWriter):
    """Outlines of the objects (or, with ``--polygons classes``, of the class regions) written as they complete."""

    def __init__(self, spec: Any, kind: OutputKind) -> None:
        require_geo(f"--format {kind.name}")
        super().__init__(spec, kind)

    def __enter__(self) -> PolygonWriter:
        self._stack = ExitStack()  # the file, opened by open() once the objects are numbered
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._stack.__exit__(exc_type, exc, tb)

    def object_rule(self) -> ObjectRule:
        """The polygon rule: the objects', or the class regions' (``--polygons classes``)."""
        return self.spec.objects.polygons

    def start_objects(self, table: ObjectTable) -> None:
        self.table = table
        self.georef = georeference(self.spec.source.path, self.spec.level)
        self.tracer = PolygonTracer(table, self.georef)
        self.columns = object_columns(table, self.spec, self.georef)
        self.count = 0
        self.open()

    def write_objects(self, start: int, ids: np.ndarray) -> None:
        self.emit(self.tracer.add(start, ids))

    def finish(self, done: Finished) -> list[Path]:
        self.emit(self.tracer.rest())
        self.close()
        return [self.path]

    def properties(self, index: int) -> dict[str, Any]:
        """One object's row of the table (id index + 1)."""
        return {name: _plain(values[index]) for name, values in self.columns.items()}

    def open(self) -> None:
        raise NotImplementedError

    def emit(self, features: list[tuple[int, Any]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


@register_output_kind("geojson", part="objects", suffixes=(".geojson", ".geojson"), needs=("objects", "probs"),
                      dask=True,
                      help="object outlines as a GeoJSON FeatureCollection QuPath imports (pixel or CRS coordinates)")
class GeoJsonWriter(PolygonWriter):
    """A FeatureCollection as QuPath reads it: per feature ``objectType`` (detection for objects, annotation for
    class regions), ``classification`` (name, colour) and ``measurements`` (the object table's row). For a
    GeoTIFF the coordinates are in its CRS, named as an EPSG URN when it has a code (GeoJSON holds no WKT)."""

    def open(self) -> None:
        def check(tmp: Path) -> None:
            with open(tmp, "rb") as f:
                head = f.read(64)
                f.seek(max(0, tmp.stat().st_size - 8))
                tail = f.read()
            if not head.startswith(b'{"type": "FeatureCollection"') or not tail.rstrip().endswith(b"]}"):
                raise ValueError("the GeoJSON file does not read back whole")
        tmp = self._stack.enter_context(atomic_path(self.path, verify=check))
        self._file = self._stack.enter_context(open(tmp, "w"))
        header: dict[str, Any] = {"type": "FeatureCollection"}
        if self.georef is not None and self.georef.epsg is not None:
            header["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{self.georef.epsg}"}}
        self._file.write(json.dumps(header)[:-1] + ', "features": [\n')

    def emit(self, features: list[tuple[int, Any]]) -> None:
        from shapely.geometry import mapping

        table = self.spec.class_table
        regions = self.object_rule() != self.spec.objects.objects
        for ident, geometry in features:
            row = self.properties(ident - 1)
            cls = int(self.table.class_id[ident - 1])
            feature = {"type": "Feature", "id": str(ident), "geometry": mapping(geometry),
                       "properties": {"objectType": "annotation" if regions else "detection",
                                      "classification": {"name": row["class"], "color": list(table.colors[cls])},
                                      "measurements": {k: v for k, v in row.items()
                                                       if k not in ("id", "class") and v is not None},
                                      "id": ident, "class": row["class"]}}
            self._file.write((",\n" if self.count else "") + json.dumps(feature))
            self.count += 1

    def close(self) -> None:
        self._file.write("\n]}\n")


@register_output_kind("gpkg", part="objects", suffixes=(".gpkg", ".gpkg"), needs=("objects", "probs"), dask=True,
                      help="object outlines as a GeoPackage layer (any CRS, WKT kept; large outputs)")
class GeoPackageWriter(PolygonWriter):
    """A GeoPackage layer ``objects`` (MultiPolygons with the object table's columns), appended batch by batch
    through pyogrio; the CRS as WKT, so user-defined CRSs survive."""

    BATCH = 2000

    def open(self) -> None:
        import pyogrio

        def check(tmp: Path) -> None:
            found = pyogrio.read_info(tmp, layer="objects")["features"]
            if found != self.count:
                raise ValueError(f"the layer reads back with {found} features, wrote {self.count}")
        self._tmp = self._stack.enter_context(atomic_path(self.path, verify=check))
        self._tmp.unlink(missing_ok=True)
        self._batch: list[tuple[int, Any]] = []
        self._written = 0

    def emit(self, features: list[tuple[int, Any]]) -> None:
        self._batch += features
        self.count += len(features)
        if len(self._batch) >= self.BATCH:
            self._flush()

    def _flush(self) -> None:
        import pyogrio.raw
        from shapely import MultiPolygon, to_wkb

        if not self._batch and self._written:
            return
        rows = [i - 1 for i, _ in self._batch]
        geoms = [g if g.geom_type == "MultiPolygon" else MultiPolygon([g]) for _, g in self._batch]
        names = list(self.columns)
        data = [np.asarray([_plain(self.columns[n][r]) for r in rows],
                           dtype=object if n == "class" else None) for n in names]
        data = [d.astype(float) if d.dtype == object and n != "class" else d for n, d in zip(names, data, strict=True)]
        with warnings.catch_warnings():  # pixel coordinates have no CRS: pyogrio's warning says so, and so do we
            warnings.filterwarnings("ignore", message="'crs' was not provided")
            pyogrio.raw.write(self._tmp, geometry=np.asarray(to_wkb(geoms), dtype=object), field_data=data,
                              fields=names, layer="objects", driver="GPKG", geometry_type="MultiPolygon",
                              crs=self._crs(), append=self._written > 0)
        self._written += len(self._batch)
        self._batch = []

    def _crs(self) -> str | None:
        """The CRS by its EPSG code when it has one (what GDAL matches best), else as WKT; None for pixels."""
        if self.georef is None:
            return None
        return f"EPSG:{self.georef.epsg}" if self.georef.epsg is not None else self.georef.crs_wkt

    def close(self) -> None:
        self._flush()
