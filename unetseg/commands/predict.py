"""``unetseg predict``: segment image files/folders with a checkpoint and write segmentation maps.

A batch survives any one bad file: each failure is one line naming the file and the cause, the other
inputs are done, and the exit code is 1. Only a failure that would make every later file fail too (the disk
is full, the output folder is read-only) stops the batch early, said once.
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import UnetsegError
from .common import comma_list, error_line, first_line, int_or_auto, torch_device


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..io.maps import MAP_FORMATS

    predict = sub.add_parser("predict", help="segment images of any size by overlap-tile inference",
                             description="Segment images (files or folders; TIFFs larger than memory are streamed) "
                                         "with a trained checkpoint and write segmentation maps named "
                                         "<input stem>_<format> into the output folder (inputs sharing a stem "
                                         "keep their extension or folder name). A bad input is reported on one "
                                         "line and the others are done; the exit code is then 1.")
    predict.add_argument("--checkpoint", required=True, help="checkpoint written by training (best.pt/last.pt)")
    predict.add_argument("--input", required=True, nargs="+", metavar="PATH", help="image files and/or folders")
    predict.add_argument("--output", required=True, metavar="DIR", help="output folder")
    predict.add_argument("--tile-size", default="auto",
                         help="tile side in pixels or 'auto' (default: auto)")
    predict.add_argument("--batch-size", default="auto",
                         help="tiles per forward pass or 'auto': 1 on CPU, 4 on GPU (default: auto)")
    predict.add_argument("--tta", choices=["flips", "d4"], default=None, help="test-time augmentation (default: none)")
    predict.add_argument("--format", default="index,palette", metavar="LIST",
                         help=f"comma list of {','.join(MAP_FORMATS)} (default: index,palette)")
    predict.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    predict.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"], default="auto",
                         help="mixed precision: auto = fp16 on CUDA, bf16 on AMX/AVX512-BF16 CPUs, else off (default: auto)")


def output_stems(files: list[Path], out_dir: Path) -> dict[Path, Path]:
    """A distinct output stem per input: ``OUT/<stem>``; inputs sharing a stem keep their extension
    (``a_png``, ``a_tif``) or, when the file names are equal too, their parent folder's name as a sub-folder."""
    groups: dict[str, list[Path]] = defaultdict(list)
    for f in files:
        groups[f.stem].append(f)
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


def run(args: argparse.Namespace) -> int:
    """Returns 0, or 1 when any input failed (each reported on one line)."""
    from ..io.atomic import is_fatal, remove_stale_temporaries
    from ..io.maps import MAP_FORMATS
    from ..io.source import find_images
    from ..inference.files import predict_file
    from ..models import load_model

    formats = comma_list("--format", args.format, MAP_FORMATS)
    device = torch_device(args.device)
    model = load_model(args.checkpoint, device=device)
    out_dir = Path(args.output)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UnetsegError(f"--output {out_dir}: cannot create folder ({err.strerror})") from None
    files = find_images(args.input)
    if not files:
        raise UnetsegError(f"--input {' '.join(args.input)}: no image files found")
    stems = output_stems(files, out_dir)
    for folder in {out_dir, *(s.parent for s in stems.values())}:
        remove_stale_temporaries(folder)  # left by a killed earlier run
    options = dict(tile_size=int_or_auto("--tile-size", args.tile_size),
                   batch_size=int_or_auto("--batch-size", args.batch_size), tta=args.tta,
                   amp=False if args.amp == "off" else args.amp, device=device)
    failed = done = 0
    for path in tqdm(files, desc="images", unit="file", disable=len(files) < 2):
        try:
            predict_file(model, path, stems[path], formats, **options)
            done += 1
        except KeyboardInterrupt:
            raise
        except Exception as err:  # noqa: BLE001  one bad file must not stop the batch, nor show a traceback
            failed += 1
            message = first_line(err) if isinstance(err, UnetsegError) else f"{type(err).__name__}: {first_line(err)}"
            error_line("predict", message if str(path) in message else f"{path}: {message}")
            if is_fatal(err):
                left = len(files) - done - failed
                error_line("predict", f"stopping: every later output would fail too ({left} file(s) not done)")
                failed += left
                break
    if failed:
        tqdm.write(f"unetseg predict: {failed} of {len(files)} file(s) failed, {done} done", file=sys.stderr)
    return 1 if failed else 0
