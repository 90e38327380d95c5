"""Segment images of any size with a trained checkpoint: ``python scripts/tile_infer.py --checkpoint ... --input ... --output ...``.

A thin wrapper around ``unetseg predict`` (see ``--help``).
"""
import sys

from unetseg.cli import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
