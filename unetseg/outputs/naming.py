"""How outputs are named: ``<stem>_<part><suffix>`` in the output folder, one stem per input; and how a folder's
outputs are told apart from its inputs (so an output folder equal to an input folder is never read back)."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ..io import volume


def file_stem(path: Path) -> str:
    """The name without its suffix; both parts of a double one (``scan.nii.gz``, ``slide.ome.tif`` -> the stem)."""
    return volume.file_stem(path)


def output_path(stem: Path, part: str, suffix: str) -> Path:
    """``<stem>_<part><suffix>``, e.g. ``out/scan_index.tif``."""
    return Path(f"{stem}_{part}{suffix}")


def output_source_stem(path: Path) -> str | None:
    """For a file named like one of unetseg's outputs (``<stem>_index.png``, ``<stem>_probs.npy``, ...) the
    ``<stem>`` part, else None. OME outputs (``<stem>_index.ome.zarr``, ``.ome.tif``) count too."""
    from .kinds import output_parts

    name = file_stem(path).removesuffix(".ome")
    for part in sorted(output_parts()):
        if name.endswith(f"_{part}") and len(name) > len(part) + 1:
            return name[: -len(part) - 1]
    return None


def skip_outputs(files: list[Path]) -> list[Path]:
    """``files`` of one folder without unetseg's outputs: a file named ``<x>_<part>.<ext>`` is an output when
    an image of stem ``x`` (or named ``x`` with its dot as ``_``, e.g. ``a.tif`` for ``a_tif``) is there too."""
    sources = {file_stem(f) for f in files} | {f.name.replace(".", "_") for f in files}
    return [f for f in files if output_source_stem(f) not in sources]


def output_stems(files: list[Path], out_dir: Path) -> dict[Path, Path]:
    """A distinct output stem per input: ``OUT/<stem>``; inputs sharing a stem keep their extension
    (``a_png``, ``a_tif``) or, when the file names are equal too, their parent folder's name as a sub-folder."""
    groups: dict[str, list[Path]] = defaultdict(list)
    for f in files:
        groups[file_stem(f)].append(f)
    stems: dict[Path, Path] = {}
    for stem, group in groups.items():
        if len(group) == 1:
            stems[group[0]] = out_dir / stem
            continue
        names = [f.name for f in group]
        parents = [f.resolve().parent.name for f in group]
        for n, f in enumerate(group):
            if names.count(f.name) == 1:
                stems[f] = out_dir / f.name.replace(".", "_")
            elif parents.count(f.resolve().parent.name) == 1:
                stems[f] = out_dir / f.resolve().parent.name / stem
            else:
                stems[f] = out_dir / f"{stem}_{n + 1}"
    taken: set[Path] = set()
    for f, target in stems.items():  # a renamed stem may meet another input's own (a.png -> a_png, a_png.tif)
        unique, n = target, 1
        while unique in taken:
            n += 1
            unique = target.with_name(f"{target.name}_{n}")
        stems[f] = unique
        taken.add(unique)
    return stems
