"""Zarr arrays: created for chunk-by-chunk writers (Dask tasks), opened lazily for reading."""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import zarr

from ..errors import OutputError


def create_array(path: str | os.PathLike, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...]) -> zarr.Array:
    """A new zarr array at ``path`` (replacing one there), filled with 0 until written, chunks ``chunks`` (HxW)."""
    chunks = tuple(chunks) + tuple(shape[len(chunks):])
    try:
        return zarr.open_array(os.fspath(path), mode="w", shape=shape, chunks=chunks, dtype=np.dtype(dtype),
                               fill_value=0)
    except OSError as err:
        raise OutputError(path, err.strerror or str(err)) from err
