"""The registry of output kinds: what ``--format`` may name, what each kind is made from, and its writer.

A kind is one entry here and one writer class (see :mod:`unetseg.outputs.writers`)::

    @register_output_kind("probs", part="probs", suffixes=(".npy", ".npy"), needs="probs",
                          help="class probabilities, float16 HxWxK .npy")
    class ProbsWriter(KindWriter): ...

The writer gets the image's :class:`~unetseg.outputs.outputset.OutputSpec` and sees every finished
:class:`~unetseg.tiling.result.Band` of the prediction; a kind that needs objects then sees the final
object ids band by band (:meth:`KindWriter.write_objects`); last, :meth:`KindWriter.finish` gets the run's
:class:`Finished` (its :class:`~unetseg.tiling.result.TiledResult` and object tables).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UnetsegError
from .naming import output_path

if TYPE_CHECKING:
    from ..objects.merge import ObjectTable
    from ..objects.separate import ObjectRule
    from ..tiling.result import Band, TiledResult
    from .outputset import OutputSpec

NEEDS = ("labels", "probs", "uncertainty", "result", "objects")


@dataclass(frozen=True)
class Finished:
    """What a finished run hands the writers: its tiled result and, when a kind needs objects, the object
    table of each object rule in use."""

    result: TiledResult
    tables: Mapping[ObjectRule, ObjectTable] = field(default_factory=dict)


class KindWriter:
    """Writes one output kind of one image; a context manager (an exception on exit discards the file).

    ``write_band(band)`` is called with contiguous bands in row order; for kinds that need objects,
    ``write_objects(start, ids)`` then with the final object ids of each band (of the rule :meth:`object_rule`
    names); ``finish(done)`` once at the end. It returns the paths written (final once the writer's ``with``
    block has exited without error).
    """

    def __init__(self, spec: OutputSpec, kind: OutputKind) -> None:
        self.spec, self.kind = spec, kind
        self.path = kind.path(spec.stem, spec.mode)

    def __enter__(self) -> KindWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        return None

    def object_rule(self) -> ObjectRule | None:
        """The object rule whose objects this kind writes (kinds that need objects)."""
        return self.spec.objects.objects if "objects" in self.kind.needs else None

    def write_band(self, band: Band) -> None:
        return None

    def start_objects(self, table: ObjectTable) -> None:
        """Called once the objects are numbered, before the first :meth:`write_objects`."""
        return None

    def write_objects(self, start: int, ids: np.ndarray) -> None:
        return None

    def finish(self, done: Finished) -> list[Path]:
        return [self.path]


@dataclass(frozen=True)
class OutputKind:
    """One ``--format`` name.

    Attributes:
        name: the format name users type.
        part: the ``<stem>_<part>`` of the file name.
        suffixes: the file suffix for in-memory inputs (PNG, JPEG) and for streamed ones (TIFF, zarr, slides).
        dask_suffix: the file suffix when Dask workers write it (default: the streamed one).
        needs: what the kind is made from: any of "labels", "probs" (the prediction then keeps
            probabilities), "uncertainty" (it then computes the entropy and the views' disagreement), "objects" (separated objects, :mod:`unetseg.objects.separate`) and "result" (only the
            finished run: counts, settings).
        writer: the :class:`KindWriter` class.
        dask: whether ``--dask`` workers can write it chunk by chunk (the others need one process).
        help: one line for ``--help``.
        dims: the inputs it is written for: 2 (images), 3 (volumes: :mod:`unetseg.outputs.volume`) or both.
    """

    name: str
    part: str
    suffixes: tuple[str, str]
    needs: tuple[str, ...]
    writer: Callable[[OutputSpec, OutputKind], KindWriter]
    dask: bool = False
    help: str = ""
    dask_suffix: str | None = None
    dims: tuple[int, ...] = (2,)

    def path(self, stem: Path, mode: str) -> Path:
        """The file of ``stem`` for inputs read in ``mode``: "memory", "stream" or "dask"."""
        suffix = {"memory": self.suffixes[0], "stream": self.suffixes[1]}.get(mode, self.dask_suffix or self.suffixes[1])
        return output_path(stem, self.part, suffix)


_KINDS: dict[str, OutputKind] = {}


def register_output_kind(name: str, *, part: str, suffixes: tuple[str, str], needs: str | tuple[str, ...],
                         dask: bool = False, help: str = "", dask_suffix: str | None = None,
                         dims: tuple[int, ...] = (2,)) -> Callable[[type[KindWriter]], type[KindWriter]]:
    """Class decorator: make a :class:`KindWriter` the writer of ``--format name``."""
    needs = (needs,) if isinstance(needs, str) else tuple(needs)
    if not set(needs) <= set(NEEDS):
        raise ValueError(f"output kind {name!r}: needs={needs!r} are not among {NEEDS}")

    def decorate(cls: type[KindWriter]) -> type[KindWriter]:
        if name in _KINDS:
            raise ValueError(f"output kind {name!r} is registered twice")
        _KINDS[name] = OutputKind(name, part, suffixes, needs, cls, dask, help, dask_suffix, dims)
        return cls
    return decorate


def _registry() -> dict[str, OutputKind]:
    from . import object_writers, volume, writers  # noqa: F401  the built-in kinds register themselves on import

    return _KINDS


def output_kinds() -> tuple[str, ...]:
    """Every format name, in registration order."""
    return tuple(_registry())


def output_kind(name: str) -> OutputKind:
    try:
        return _registry()[name]
    except KeyError:
        raise UnetsegError(f"unknown output format {name!r} (known: {', '.join(_registry())})") from None


def output_parts() -> set[str]:
    """The ``<part>`` names of every kind's files (how outputs are told apart from inputs in a folder)."""
    return {kind.part for kind in _registry().values()}


def check_formats(formats: list[str], *, dask: bool = False, dims: int | None = None) -> list[OutputKind]:
    """The kinds of ``formats``; with ``dask``, only kinds Dask workers can write; with ``dims``, only kinds written
    for images (2) or volumes (3) (else one line naming them)."""
    kinds = [output_kind(f) for f in formats]
    if dims is not None:
        unable = [k.name for k in kinds if dims not in k.dims]
        if unable:
            able = [k.name for k in _registry().values() if dims in k.dims]
            what = "images" if dims == 2 else "volumes"
            raise UnetsegError(f"--format {','.join(unable)} is not written for {what}; {what} take "
                               f"{', '.join(able)}")
    if dask:
        able = [k.name for k in _registry().values() if k.dask]
        unable = [k.name for k in kinds if not k.dask]
        if unable:
            raise UnetsegError(f"--dask writes {', '.join(able)} only, not {','.join(unable)}")
    return kinds
