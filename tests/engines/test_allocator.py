"""The allocator's modes: torch's forward on a CPU reuses freed memory instead of page-faulting fresh pages for each
layer (keep); with an engine that plans its own memory the pipeline's freed buffers go back to the OS (return)."""
import subprocess
import sys

import pytest

from unetseg.engines.allocator import keep_freed_memory

FAULTS = """
import resource, sys, torch
from unetseg.engines.allocator import keep_freed_memory

def faults_of_big_temporaries():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(6):
        torch.ones(16 * 2**20)  # 64 MiB allocated, written and freed, as a layer's output is
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults_of_big_temporaries()
default = faults_of_big_temporaries()
kept = keep_freed_memory()
faults_of_big_temporaries()  # the heap grows once
print(default, faults_of_big_temporaries(), kept)
"""


def test_big_temporaries_stop_faulting_once_freed_memory_is_kept():
    if not keep_freed_memory():
        pytest.skip("no glibc here: the allocator is left alone")
    run = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True, check=True)
    default, kept, applied = run.stdout.split()
    assert applied == "True"
    # a fresh 64 MiB mapping faults 16k 4-KiB pages (32 with transparent huge pages); reused heap memory: none. The
    # kernel may reclaim the idle heap once between passes (proactive reclaim, DAMON: one 64 MiB re-fault seen in
    # CI), so kept memory must fault at most 1.5 of the 6 temporaries' pages, where the default faults all 6
    assert int(default) >= 6 * 32 and int(kept) * 4 <= int(default)


def test_commands_keep_freed_memory(monkeypatch, tmp_path):
    import unetseg.cli

    calls = []
    monkeypatch.setattr(unetseg.cli, "keep_freed_memory", lambda: calls.append(1))
    missing = str(tmp_path / "missing.pt")
    assert unetseg.cli.main(["predict", "--checkpoint", missing, "--input", "x.png", "--output", str(tmp_path)]) == 2
    assert calls == [1]


RETURNED = """
import sys, numpy as np, psutil
from unetseg.engines.allocator import keep_freed_memory, return_freed_memory

def rss_after_buffers(mode):
    mode()
    held = [np.ones(3 * 2**20, np.uint8) for _ in range(40)]  # 120 MiB of 3 MiB buffers, as tiles and windows are
    del held[::2]  # freed out of order: holes between live blocks
    return psutil.Process().memory_info().rss / 2**20

keep = rss_after_buffers(keep_freed_memory)
returned = rss_after_buffers(return_freed_memory)
print(round(keep), round(returned))
"""


def test_the_return_mode_hands_freed_buffers_back():
    if not keep_freed_memory():
        pytest.skip("no glibc here: the allocator is left alone")
    run = subprocess.run([sys.executable, "-c", RETURNED], capture_output=True, text=True, check=True)
    keep, returned = map(int, run.stdout.split())
    assert returned < keep - 40  # half of 120 MiB freed: kept in the heap's holes, returned when mapped


@pytest.mark.parametrize("engine, mode", [("torch", "keep"), ("openvino", "return")])
def test_the_library_call_sets_the_mode_of_the_engine_that_runs(engine, mode, monkeypatch):
    """A program calling predict_tiled gets the CLI's allocator settings without setting them (OpenVINO plans its
    own memory, so the pipeline's buffers are returned)."""
    if engine == "openvino":
        pytest.importorskip("openvino")
    import numpy as np

    import unetseg
    from unetseg.tiling import predict

    calls = []
    monkeypatch.setattr(predict, "keep_freed_memory", lambda: calls.append("keep"))
    monkeypatch.setattr(predict, "return_freed_memory", lambda: calls.append("return"))
    model = unetseg.UNet(1, 2, base_channels=4, depth=2).eval()
    unetseg.predict_tiled(model, np.zeros((40, 40), np.uint8), engine=engine, tile_size=32)
    assert calls == [mode]


ONE_HEAP = """
import threading, numpy as np, psutil
from unetseg.engines.allocator import keep_freed_memory

keep_freed_memory()
SIZE = 48 * 2**20

def freed_in_a_thread():  # as the tile reader frees a window
    block = np.ones(SIZE, np.uint8)
    del block

thread = threading.Thread(target=freed_in_a_thread)
thread.start()
thread.join()
before = psutil.Process().memory_info().rss
block = np.ones(SIZE, np.uint8)  # the forward's next activation, in the main thread
print(round((psutil.Process().memory_info().rss - before) / 2**20))
"""


def test_threads_share_one_heap_so_memory_one_frees_serves_another():
    if not keep_freed_memory():
        pytest.skip("no glibc here: the allocator is left alone")
    run = subprocess.run([sys.executable, "-c", ONE_HEAP], capture_output=True, text=True, check=True)
    assert int(run.stdout) < 24  # reused; with a heap per thread the main thread maps 48 MiB anew


def test_long_lived_buffers_get_their_own_mapping():
    import mmap

    import numpy as np

    from unetseg.engines.allocator import MAPPED_FROM_BYTES, mapped_empty

    band = mapped_empty((512, 4096), np.uint8)
    assert band.shape == (512, 4096) and band.dtype == np.uint8 and band.flags.writeable
    owner = band
    while not isinstance(owner, mmap.mmap):  # array -> array -> memoryview -> the mapping
        owner = owner.obj if isinstance(owner, memoryview) else owner.base
    assert len(owner) == band.nbytes
    band[:] = 7
    assert int(band.sum()) == 7 * 512 * 4096
    small = mapped_empty((8, 8), np.float32)
    assert small.nbytes < MAPPED_FROM_BYTES and small.base is None  # an ordinary numpy array


def test_freed_memory_is_handed_back_every_few_seconds_in_the_keep_mode_and_every_batch_in_the_return_mode(
        monkeypatch):
    import numpy as np

    from unetseg.engines import allocator

    now = [100.0]
    released = []
    monkeypatch.setattr(allocator.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(allocator, "release_freed_memory", lambda: released.append(now[0]) or True)
    monkeypatch.setattr(allocator, "_RELEASED", [])
    monkeypatch.setattr(allocator, "_MODE", [])
    assert not allocator.release_between_batches()  # glibc's defaults: left alone
    monkeypatch.setattr(allocator, "_MODE", ["return"])
    assert [allocator.release_between_batches() for _ in range(3)] == [False, True, True]  # the first starts the clock
    monkeypatch.setattr(allocator, "_RELEASED", [])
    released.clear()
    monkeypatch.setattr(allocator, "_MODE", ["keep"])
    ticks = []
    for _ in range(40):  # a batch every 0.4 s for 16 s
        ticks.append(allocator.release_between_batches())
        now[0] += 0.4
    gaps = np.diff([100.0, *released])  # the first batch starts the clock; then one release per interval
    assert len(released) == sum(ticks) == 3
    assert (gaps >= allocator.RELEASE_EVERY_SECONDS).all() and (gaps < allocator.RELEASE_EVERY_SECONDS + 0.5).all()
