"""The ``data:`` section of a run config (pydantic v2; unknown keys are errors).

Example (YAML)::

    data:
      source: folder            # or "sample"
      images: data/images
      masks: data/masks
      mask_mode: color          # "index": pixel = class id; "color": RGB looked up in `classes`
      classes:
        - {name: background, color: [0, 0, 0]}
        - {name: cell, color: [255, 0, 0]}
      ignore_index: 255
      nodata: auto              # or a number, or null (NaN/Inf are always invalid)
      class_values: [1, 2, 3]   # mask values of classes 0, 1, 2 (default: the value is the class id)
      val_fraction: 0.2
      split: files              # or "regions": a seeded grid of blocks of each image (split_grid)
      patch_size: 572
      patches_per_epoch: 400
      augment: {elastic: {sigma: 10, p: 0.5}, gamma: false}
      weight_map: {enabled: true, w0: 10, sigma: 5}

Any augmentation may be given as ``true``/``false`` instead of a mapping.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..data.classes import ClassTable
from ..data.instances import BOUNDARY_WIDTH, DISTANCE_BIN, DISTANCE_LEVELS, InstanceLayout
from ..data.samples import list_samples
from ..errors import UnetsegError
from .base import Strict, validate_section

__all__ = [
    "AffineAug", "AugmentConfig", "BrightnessContrastAug", "ClassSpec", "DataConfig", "DisplayConfig", "ElasticAug",
    "GammaAug",
    "ToggleAug", "WeightMapConfig", "parse_data_config",
]


class ToggleAug(Strict):
    """An augmentation that is on or off, applied with probability ``p``. ``true``/``false`` accepted."""

    enabled: bool = True
    p: float = Field(0.5, ge=0.0, le=1.0)

    @model_validator(mode="before")
    @classmethod
    def _from_bool(cls, data: Any) -> Any:
        return {"enabled": data} if isinstance(data, bool) else data


class AffineAug(ToggleAug):
    """``A.Affine``: scale in ``1 +- scale``, rotation in ``+-rotate`` degrees, shift in ``+-shift`` of the size."""

    scale: float = Field(0.1, ge=0.0, lt=1.0)
    rotate: float = Field(15.0, ge=0.0, le=180.0)
    shift: float = Field(0.05, ge=0.0, le=0.5)


class BrightnessContrastAug(ToggleAug):
    """``A.RandomBrightnessContrast``: brightness shift ``+-brightness`` x image mean, contrast ``1 +- contrast``."""

    brightness: float = Field(0.1, ge=0.0, le=1.0)
    contrast: float = Field(0.1, ge=0.0, le=1.0)


class GammaAug(ToggleAug):
    """``A.RandomGamma`` with gamma drawn from ``[low, high]`` (on images scaled to [0, 1])."""

    p: float = Field(0.3, ge=0.0, le=1.0)
    low: float = Field(0.8, gt=0.0)
    high: float = Field(1.2, gt=0.0)

    @model_validator(mode="after")
    def _ordered(self) -> GammaAug:
        if self.low > self.high:
            raise ValueError(f"gamma low={self.low} must not exceed high={self.high}")
        return self


class ElasticAug(ToggleAug):
    """The paper's elastic deformation: N(0, ``sigma`` px) displacements on a ``grid`` x ``grid`` grid.

    On volumes (3D models) the same keys drive a 3D deformation (:mod:`unetseg.data.augment3d`): a ``grid`` ^ 3
    grid of N(0, ``sigma``) voxel displacements along the finest axis, each axis's scaled by finest spacing / its
    spacing (the same physical strength on every axis), upsampled cubically and applied with
    ``scipy.ndimage.map_coordinates`` (linear for the image, nearest for labels, mirrored borders)."""

    sigma: float = Field(10.0, ge=0.0)
    grid: int = Field(3, ge=2)


class AugmentConfig(Strict):
    """Which augmentations run, in this order: brightness_contrast, gamma, flips/rot90, affine, elastic.

    On volumes (3D models): flips and quarter turns in-plane always, and through-plane (z) too where the spacing
    is nearly isotropic (max/min spacing < 3, nnU-Net's rule); elastic in 3D (:class:`ElasticAug`);
    brightness_contrast as intensity shift/scale and gamma; affine acts on 2D images only.

    Flips and rot90 both on = ``A.D4``, uniform over the 8 symmetries of the square (their ``p``
    is then unused); flips alone = horizontal and vertical flip, each with ``p``; rot90 alone =
    ``A.RandomRotate90`` with ``p``. ``augment: false`` switches everything off.
    """

    flips: ToggleAug = ToggleAug()
    rot90: ToggleAug = ToggleAug()
    affine: AffineAug = AffineAug()
    brightness_contrast: BrightnessContrastAug = BrightnessContrastAug()
    gamma: GammaAug = GammaAug()
    elastic: ElasticAug = ElasticAug()

    @model_validator(mode="before")
    @classmethod
    def _from_bool(cls, data: Any) -> Any:
        # `augment: false` switches everything off.
        if data is False:
            return {name: False for name in cls.model_fields}
        return {} if data is True else data


class WeightMapConfig(Strict):
    """Per-pixel loss weights (the paper's eq. 2).

    ``enabled``: border term between objects when the data has instances; ``from_components``:
    for data without instances (folders), take the connected components of each non-background
    class as the objects; ``w0``, ``sigma``: the term's height and width (pixels); ``class_weights``: None (1 per class), ``"balanced"`` (inverse
    class frequency over the training masks, mean pixel weight 1) or one weight per class.
    """

    enabled: bool = True
    from_components: bool = False
    w0: float = Field(10.0, ge=0.0)
    sigma: float = Field(5.0, gt=0.0)
    class_weights: None | Literal["balanced"] | list[float] = None

    @model_validator(mode="before")
    @classmethod
    def _from_bool(cls, data: Any) -> Any:
        return {"enabled": data} if isinstance(data, bool) else data

    @field_validator("class_weights")
    @classmethod
    def _positive(cls, value: Any) -> Any:
        if isinstance(value, list) and any(w < 0 for w in value):
            raise ValueError(f"class_weights must be >= 0, got {value}")
        return value


class ClassSpec(Strict):
    """One class: its name, RGB colour (optional for index masks) and whether overlays leave it untinted."""

    name: str = Field(min_length=1)
    color: tuple[int, int, int] | None = None
    transparent: bool = False

    @field_validator("color")
    @classmethod
    def _rgb(cls, value: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        if value is not None and not all(0 <= v <= 255 for v in value):
            raise ValueError(f"color must be three integers in 0..255, got {list(value)}")
        return value


class DisplayConfig(Strict):
    """How previews (samples.png, overlays, the demo) show an image: ``bands`` [r, g, b] or [b] (0-based;
    default the first three for 3+ bands, else band 0), stretched over the 2-98 percentiles of valid pixels."""

    bands: list[int] | None = None

    @field_validator("bands")
    @classmethod
    def _one_or_three(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (len(value) not in (1, 3) or any(b < 0 for b in value)):
            raise ValueError(f"bands must be [r, g, b] or [b], band numbers from 0, got {value}")
        return value


class DataConfig(Strict):
    """Where the training data comes from and how training patches are made.

    Attributes:
        source: ``"sample"`` (a built-in sample, see ``unetseg.data.samples``) or ``"folder"``.
        sample, sample_options: sample name (default ``"nuclei"``) and the options of ``load_sample``.
        images, masks: folders of images and masks paired by file stem (``source="folder"``); for a 3D model,
            folders of NIfTI volumes (``.nii``, ``.nii.gz``) and label volumes (:mod:`unetseg.data.volume_folder`).
        mask_mode: ``"index"`` (pixel value = class id), ``"color"`` (RGB mapped via ``classes``) or
            ``"instances"`` (label images, 0 = background, one id per object: the targets are background,
            object interior and object boundary, see :mod:`unetseg.data.instances`).
        classes: class names (+ colours; required for colour masks). Default: from the data. With instance
            masks: the object classes (default one, "object"; the nuclei sample's "nucleus").
        instance_classes: with instance masks, a CSV (``image``, ``id``, ``class`` columns) or JSON file giving
            each object's class by name (default: every object is of the first class).
        boundary_width: with instance masks, the boundary's width in px (default 2, chosen by measurement).
        instance_target: with instance masks, what the model learns: ``"three_class"`` (default: background,
            interior, boundary) or ``"distance"`` (the distance to the object's boundary in ``distance_levels``
            ordinal classes of ``distance_bin`` px; objects by a seeded watershed; one object class only).
        distance_levels, distance_bin: the distance target's level count (default 6, 2..32) and bin width in px
            (default 2).
        distance_relative: the distance levels are equal fractions of each object's own depth, so objects of
            any size have every level (``distance_bin`` is then how far each level floods, px, minus one: at least
            the deepest object's depth / levels). Default off: on the nuclei sample's region folds (sizes within
            1.5x of each other) 4 relative levels tied 3 absolute ones (AP@0.5 0.812 vs 0.817 fold mean).
        ignore_index: label of unlabelled pixels (e.g. 255): no loss, kept through augmentation.
        ignore_color: RGB colour of unlabelled pixels in colour masks (mapped to ``ignore_index``).
        nodata: ``"auto"`` (default: each TIFF's GDAL_NODATA tag), a number, or None; NaN/Inf are always
            invalid. Invalid pixels enter no statistic, their labels are ignored, the model sees them as 0.
        nodata_rule: ``"any"`` (default): a pixel is invalid when any band is nodata; ``"all"``: every band.
        mask_nodata: mask value whose pixels are ignored (default: the mask file's GDAL_NODATA tag, if any).
        normalize: ``"meanstd"`` (default) or ``"percentile"`` (1st/99th percentiles), per band, valid pixels;
            ``"ct"`` (nnU-Net's CT rule: clip to the 0.5/99.5 percentiles of the training set's foreground voxels,
            mask > 0, then z-score with their mean/std; the checkpoint keeps all four); ``"zscore"`` (3D models:
            each volume by its own mean/std, at training and prediction time; nnU-Net's rule for MRI and other
            modalities). See :mod:`unetseg.data.normalization`.
        pixel_size: physical size of a training-image pixel, one number or [y, x], in ``pixel_unit``
            (default: what the images' metadata records: TIFF resolution tags, OME-XML, GeoTIFF pixel scale).
            The checkpoint keeps it, and ``unetseg predict`` segments the pyramid level nearest it by default.
        pixel_unit: the unit of ``pixel_size`` (default "micrometer"; "nanometer", "millimeter", "meter", ...).
        class_values: mask values of classes 0..K-1 (ints, or floats holding integral values); default: the
            mask value is the class id.
        split: ``"files"`` (default: whole images) or ``"regions"`` (blocks of a ``split_grid`` of each image,
            ``val_fraction`` of them to validation, with a gap of the model's context between the sides). Volumes
            split as files when there are at least two, else (or under ``"regions"``) into slabs along z.
        val_fraction, val_files, split_seed: folder train/val split, by a seeded fraction or by
            explicit stems/file names (``val_files`` wins). Samples have fixed splits.
        folds, fold: validate on fold ``fold`` of ``folds`` (set by ``train --folds K``): folders are split into
            file folds (region folds of ``split_grid`` blocks under ``split: regions`` or with fewer images than
            folds); a sample's training images likewise (its validation images stay held out).
        patch_size: input side of training crops, rounded to the model's nearest valid input size; for a 3D
            model also one side per axis, ``[depth, height, width]`` (e.g. ``[8, 128, 128]``: a few slices of a
            2.5D network).
        patches_per_epoch: random crops per epoch.
        augment, weight_map: see :class:`AugmentConfig`, :class:`WeightMapConfig`.
        num_workers: DataLoader worker processes.
    """

    source: Literal["sample", "folder"] = "sample"
    sample: str | None = None
    sample_options: dict[str, Any] = Field(default_factory=dict)
    images: str | None = None
    masks: str | None = None
    mask_mode: Literal["index", "color", "instances"] = "index"
    classes: list[ClassSpec] | None = None
    instance_classes: str | None = None
    boundary_width: int = Field(BOUNDARY_WIDTH, ge=1, le=16)
    instance_target: Literal["three_class", "distance"] = "three_class"
    distance_levels: int = Field(DISTANCE_LEVELS, ge=2, le=32)
    distance_bin: int = Field(DISTANCE_BIN, ge=1, le=16)
    distance_relative: bool = False
    ignore_index: int | None = Field(None, ge=0)
    ignore_color: tuple[int, int, int] | None = None
    nodata: Literal["auto"] | float | None = "auto"
    nodata_rule: Literal["any", "all"] = "any"
    mask_nodata: float | None = None
    normalize: Literal["meanstd", "percentile", "ct", "zscore"] = "meanstd"
    pixel_size: float | tuple[float, float] | None = None
    pixel_unit: str = "micrometer"
    class_values: list[float] | None = None
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    split: Literal["files", "regions"] = "files"
    split_grid: tuple[int, int] = (4, 4)
    val_files: list[str] | None = None
    split_seed: int = Field(0, ge=0)
    folds: int | None = Field(None, ge=2)  # k-fold cross-validation (`train --folds K` sets folds and fold)
    fold: int | None = Field(None, ge=0)
    patch_size: int | tuple[int, int, int] = 256
    patches_per_epoch: int = Field(256, ge=1)
    augment: AugmentConfig = AugmentConfig()
    weight_map: WeightMapConfig = WeightMapConfig()
    num_workers: int = Field(0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _default_sample(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("source", "sample") == "sample" and data.get("sample") is None:
            return {**data, "sample": "nuclei"}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> DataConfig:
        if self.source == "folder":
            missing = [k for k in ("images", "masks") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"source='folder' requires {' and '.join(missing)} (folder paths)")
            if self.sample is not None or self.sample_options:
                raise ValueError(f"sample={self.sample!r} / sample_options apply to source='sample' only")
        else:
            if self.sample not in list_samples():
                raise ValueError(f"sample={self.sample!r} is not a built-in sample; choose one of "
                                 f"{', '.join(list_samples())}")
            stray = [k for k in ("images", "masks", "val_files") if getattr(self, k) is not None]
            if stray:
                raise ValueError(f"{', '.join(stray)} apply to source='folder' only (source='sample', "
                                 f"sample={self.sample!r} has a fixed split)")
            if self.split != "files" or self.class_values is not None:
                raise ValueError("split='regions' and class_values apply to source='folder' only")
            if self.mask_mode == "color" or (self.classes is not None and self.mask_mode != "instances"):
                raise ValueError("mask_mode='color' and classes apply to source='folder' only (samples carry their "
                                 "classes); a sample with instances takes mask_mode='instances'")
        if self.mask_mode == "instances":
            if self.class_values is not None or self.ignore_color is not None:
                raise ValueError("class_values and ignore_color do not apply to mask_mode='instances'")
            if self.instance_target == "distance" and (self.instance_classes is not None or len(self.classes or ()) > 1):
                raise ValueError("instance_target='distance' codes one object class; instance_classes and several "
                                 "classes need instance_target='three_class'")
        elif self.instance_classes is not None:
            raise ValueError("instance_classes applies to mask_mode='instances' only")
        elif self.instance_target != "three_class":
            raise ValueError(f"instance_target={self.instance_target!r} applies to mask_mode='instances' only")
        if self.mask_mode == "color":
            if not self.classes:
                raise ValueError("mask_mode='color' requires classes with a color for each")
            uncoloured = [c.name for c in self.classes if c.color is None]
            if uncoloured:
                raise ValueError(f"mask_mode='color': classes {uncoloured} have no color")
        if self.ignore_color is not None and self.ignore_index is None:
            raise ValueError(f"ignore_color={list(self.ignore_color)} requires ignore_index (the label it maps to)")
        n_classes = len(self.classes) if self.classes is not None else len(self.class_values or [])
        if n_classes and self.ignore_index is not None and self.ignore_index < n_classes:
            raise ValueError(f"ignore_index={self.ignore_index} is a class id (there are {n_classes} "
                             "classes); use a value >= the number of classes, e.g. 255")
        self._check_class_values()
        if (self.folds is None) != (self.fold is None) or (self.folds is not None and self.fold >= self.folds):
            raise ValueError(f"fold={self.fold} of folds={self.folds}: set both, with 0 <= fold < folds")
        sizes = [self.pixel_size] if isinstance(self.pixel_size, (int, float)) else list(self.pixel_size or [])
        if any(not s > 0 for s in sizes):
            raise ValueError(f"pixel_size must be positive, got {self.pixel_size}")
        sides = self.patch_size if isinstance(self.patch_size, tuple) else (self.patch_size,)
        if any(side < 1 for side in sides):
            raise ValueError(f"patch_size={self.patch_size}: sides must be >= 1")
        if self.split_grid[0] < 1 or self.split_grid[1] < 1 or self.split_grid[0] * self.split_grid[1] < 2:
            raise ValueError(f"split_grid={list(self.split_grid)} needs at least 2 blocks (rows, cols >= 1)")
        cw = self.weight_map.class_weights
        if isinstance(cw, list) and self.classes is not None and len(cw) != len(self.classes):
            raise ValueError(f"weight_map.class_weights has {len(cw)} entries for {len(self.classes)} classes")
        return self

    def _check_class_values(self) -> None:
        values = self.class_values
        if values is None:
            return
        if self.mask_mode != "index":
            raise ValueError("class_values apply to mask_mode='index' only")
        if not values or any(v != round(v) for v in values) or len(set(values)) != len(values):
            raise ValueError(f"class_values must be distinct integral values, got {values}")
        if self.classes is not None and len(self.classes) != len(values):
            raise ValueError(f"class_values has {len(values)} entries for {len(self.classes)} classes")
        if self.ignore_index is not None and self.ignore_index in values:
            raise ValueError(f"ignore_index={self.ignore_index} is one of class_values {values}")

    def instance_layout(self, sample_names: tuple[str, ...] = ("object",)) -> InstanceLayout | None:
        """The targets' layout under ``mask_mode: instances`` (object classes from ``classes``, else
        ``sample_names``), else None."""
        if self.mask_mode != "instances":
            return None
        names = tuple(c.name for c in self.classes) if self.classes else sample_names
        return InstanceLayout(names, self.boundary_width, self.instance_target, self.distance_levels,
                              self.distance_bin, self.distance_relative)

    def configured_classes(self) -> ClassTable | None:
        """The configured classes as a :class:`ClassTable` (default colours where none given), or None (also
        under ``mask_mode: instances``, whose classes :meth:`instance_layout` makes)."""
        if self.classes is None or self.mask_mode == "instances":
            return None
        default = ClassTable.default(len(self.classes))
        colors = tuple(c.color if c.color is not None else default.colors[i] for i, c in enumerate(self.classes))
        try:
            return ClassTable(tuple(c.name for c in self.classes), colors,
                              tuple(i for i, c in enumerate(self.classes) if c.transparent))
        except ValueError as exc:
            raise UnetsegError(f"data.classes: {exc}") from None


def parse_data_config(data: dict[str, Any] | None, prefix: str = "data") -> DataConfig:
    """Validate a ``data:`` mapping; raises UnetsegError with one line naming each bad key and value."""
    return validate_section(DataConfig, data or {}, "invalid config", (prefix,))
