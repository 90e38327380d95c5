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
