"""The registry of output kinds: what ``--format`` may name, what each kind is made from, and its writer.

A kind is one entry here and one writer class (see :mod:`unetseg.outputs.writers`)::

    @register_output_kind("probs", part="probs", suffixes=(".npy", ".npy"), needs="probs",
                          help="class probabilities, float16 HxWxK .npy")
    class ProbsWriter(KindWriter): ...

The writer gets the image's :class:`~unetseg.outputs.outputset.OutputSpec` and sees every finished
:class:`~unetseg.inference.result.Band` of the prediction, then :meth:`KindWriter.finish` with its
:class:`~unetseg.inference.result.TiledResult`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UnetsegError
from .naming import output_path

if TYPE_CHECKING:
    from ..inference.result import Band, TiledResult
    from .outputset import OutputSpec

NEEDS = ("labels", "probs", "result")


class KindWriter:
    """Writes one output kind of one image; a context manager (an exception on exit discards the file).

    ``write_band(band)`` is called with contiguous bands in row order, ``finish(result)`` once after the last
    band; it returns the paths written (final once the writer's ``with`` block has exited without error).
    """

    def __init__(self, spec: OutputSpec, kind: OutputKind) -> None:
        self.spec, self.kind = spec, kind
        self.path = kind.path(spec.stem, spec.streaming)

    def __enter__(self) -> KindWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        return None

    def write_band(self, band: Band) -> None:
        return None

    def finish(self, result: TiledResult) -> list[Path]:
        return [self.path]


@dataclass(frozen=True)
class OutputKind:
    """One ``--format`` name.

    Attributes:
        name: the format name users type.
        part: the ``<stem>_<part>`` of the file name.
        suffixes: the file suffix for in-memory inputs (PNG, JPEG) and for streamed ones (TIFF, zarr, slides).
        needs: what the kind is made from: "labels", "probs" (the prediction then keeps probabilities) or
            "result" (only the finished run: counts, settings).
        writer: the :class:`KindWriter` class.
        dask: whether ``--dask`` workers can write it chunk by chunk (the others need one process).
        help: one line for ``--help``.
    """

    name: str
    part: str
    suffixes: tuple[str, str]
    needs: str
    writer: Callable[[OutputSpec, OutputKind], KindWriter]
    dask: bool = False
    help: str = ""

    def path(self, stem: Path, streaming: bool) -> Path:
        return output_path(stem, self.part, self.suffixes[streaming])


_KINDS: dict[str, OutputKind] = {}


def register_output_kind(name: str, *, part: str, suffixes: tuple[str, str], needs: str, dask: bool = False,
                         help: str = "") -> Callable[[type[KindWriter]], type[KindWriter]]:
    """Class decorator: make a :class:`KindWriter` the writer of ``--format name``."""
    if needs not in NEEDS:
        raise ValueError(f"output kind {name!r}: needs={needs!r} is not one of {NEEDS}")

    def decorate(cls: type[KindWriter]) -> type[KindWriter]:
        if name in _KINDS:
            raise ValueError(f"output kind {name!r} is registered twice")
        _KINDS[name] = OutputKind(name, part, suffixes, needs, cls, dask, help)
        return cls
    return decorate


def _registry() -> dict[str, OutputKind]:
    from . import writers  # noqa: F401  the built-in kinds register themselves on import

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


def check_formats(formats: list[str], *, dask: bool = False) -> list[OutputKind]:
    """The kinds of ``formats``; with ``dask``, only kinds Dask workers can write (else one line naming them)."""
    kinds = [output_kind(f) for f in formats]
    if dask:
        able = [k.name for k in _registry().values() if k.dask]
        unable = [k.name for k in kinds if not k.dask]
        if unable:
            raise UnetsegError(f"--dask writes {' and '.join(able)} only, not {','.join(unable)}")
    return kinds
