"""``unetseg plan``: a complete, commented run config from a fingerprint of the data and this machine's speed."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ..data.samples import list_samples


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """--images/--masks (or --sample) and --minutes: what a plan is made from (plan, and train without a config)."""
    parser.add_argument("--images", default=None, metavar="DIR", help="folder of training images")
    parser.add_argument("--masks", default=None, metavar="DIR",
                        help="folder of masks paired with the images by file stem (class ids, class values, colours "
                             "or object ids: the plan finds out which)")
    parser.add_argument("--sample", default=None, choices=list_samples(),
                        help="plan for a built-in sample instead of folders")
    parser.add_argument("--volume", action="store_true",
                        help="plan for the sample as volumes (a sample cut from a volume: brain); folders of volume "
                             "files (NIfTI, TIFF z-stacks, OME-Zarr) are planned as volumes without it")
    parser.add_argument("--minutes", type=float, default=10.0, metavar="M",
                        help="training time to plan for (default: 10)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    plan = sub.add_parser("plan", help="write a run config planned from the data",
                          description="Fingerprint the training data (sizes, bands, dtype, nodata, how masks code "
                                      "classes, class shares, object sizes, pixel spacing), time training steps on "
                                      "this machine, and write a complete run config whose every choice is "
                                      "explained in a comment line. On masks that number objects the target is "
                                      "distance levels, or from --minutes 10 the better of both targets in a "
                                      "short probe (a tenth of the budget each). `unetseg train CONFIG` runs it.")
    add_data_arguments(plan)
    plan.add_argument("--out", default=None, metavar="CONFIG.yaml", help="write here (default: print it)")


def announce(args: argparse.Namespace) -> None:
    """The first status line of a planned run, printed before the heavy imports (the first seconds are not silent)."""
    if getattr(args, "config", None) is not None:
        return  # a config's errors must stay one line on stderr
    if args.sample is not None and not (args.images or args.masks):
        line = f"unetseg plan: reading the built-in sample {args.sample}"
    elif args.images and args.masks and args.sample is None:
        line = f"unetseg plan: reading the images in {args.images} and the masks in {args.masks}"
    else:
        return  # a usage error follows
    print(line, file=sys.stderr, flush=True)


def make_plan_from_args(args: argparse.Namespace, probe_dir: Any = None, fixed: Any = ()) -> Any:
    """The Plan (typed lazily to keep imports light) for the data ``args`` name; a plan on instance masks gets its
    target from a probe (:mod:`unetseg.training.probe`) run in ``probe_dir`` (default: a temporary folder) unless
    ``fixed`` (the ``--set`` keys) names ``data.instance_target``."""
    from ..training.plan import make_plan
    from ..training.probe import probe_target, probes
    from ..training.volume_plan import make_volume_plan

    fp, volume = fingerprint_from_args(args)

    def say(line: str) -> None:
        print(f"unetseg plan: {line}", file=sys.stderr, flush=True)

    plan = (make_volume_plan if volume else make_plan)(fp, args.minutes, started=getattr(args, "started", None), say=say)
    if probes(plan.config, args.minutes) and "data.instance_target" not in fixed:
        found = probe_target(plan.config, args.minutes, probe_dir, say=say)
        plan.config["data"]["instance_target"] = found.target
        plan.reasons["data.instance_target"] = found.reason()
        plan.header.append(f"the target probe took {found.seconds:.0f} s of the budget")
    return plan


def fingerprint_from_args(args: argparse.Namespace) -> tuple[Any, bool]:
    """The fingerprint of the data ``args`` name (--sample [--volume], or --images/--masks) and whether they are
    volumes; a bad --minutes or a missing data argument is a one-line UnetsegError."""
    from ..data.fingerprint import fingerprint_folder, fingerprint_sample
    from ..data.volume_fingerprint import fingerprint_volume_folder, fingerprint_volume_sample
    from ..errors import UnetsegError

    if not args.minutes > 0:
        raise UnetsegError(f"--minutes {args.minutes:g}: must be positive")
    volume = bool(getattr(args, "volume", False))
    if args.sample is not None:
        if args.images or args.masks:
            raise UnetsegError("give --sample or --images and --masks, not both")
        return (fingerprint_volume_sample(args.sample) if volume else fingerprint_sample(args.sample)), volume
    if args.images and args.masks:
        volume = holds_volumes(args.images)
        return (fingerprint_volume_folder(args.images, args.masks) if volume
                else fingerprint_folder(args.images, args.masks)), volume
    raise UnetsegError("a plan needs --images DIR and --masks DIR (or --sample NAME)")


def holds_volumes(folder: str) -> bool:
    """Whether the images folder holds volume files (NIfTI, TIFF z-stacks, OME-Zarr) rather than 2D images: its
    first file (by name) decides; a missing folder is left to the fingerprint's one-line error."""
    from pathlib import Path

    from ..io.volume import is_volume_file

    path = Path(folder)
    entries = sorted(p for p in path.iterdir() if not p.name.startswith(".")) if path.is_dir() else []
    return bool(entries) and is_volume_file(entries[0])


def run(args: argparse.Namespace) -> int:
    announce(args)
    from ..io.maps import write_text

    plan = make_plan_from_args(args)
    plan.run_config()  # the plan is a valid config, or a one-line error
    text = plan.to_yaml()
    if args.out:
        write_text(args.out, text)
        print(f"plan written to {args.out}; train it with: unetseg train {args.out}")
    else:
        print(text, end="")
    return 0
