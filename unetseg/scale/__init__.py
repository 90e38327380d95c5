"""Images too large for one machine's time: :func:`predict_dask` maps the tiler over the output chunks of a zarr
array on a Dask cluster (bit-identical to one process), :func:`run_blocks` runs the same blocks in one process with
a resumable journal, :func:`dask_objects` labels objects chunk by chunk and joins them with one union-find."""
from .chunked import run_blocks
from .dask import dask_client, predict_dask
from .objects import dask_objects

__all__ = ["dask_client", "dask_objects", "predict_dask", "run_blocks"]
