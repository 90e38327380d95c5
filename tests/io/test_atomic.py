"""Every write is verified before it becomes final; a failed one leaves nothing and says why in one line."""
import errno
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile

import unetseg
from unetseg.errors import OutputError
from unetseg.export import export_model
from unetseg.io import maps
from unetseg.io.atomic import atomic_path, is_fatal, remove_stale_temporaries
from unetseg.io.sinks import NpyWriter
from unetseg.io.tiff_writer import TiffTileWriter, verify_tiff

from ..faults import fill_disk, needs_dev_full

LABELS = np.arange(40 * 48, dtype=np.uint8).reshape(40, 48) % 3
PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]], np.uint8)


def _tiny():
    return unetseg.UNet(1, 2, base_channels=2, depth=2, padding="same").eval()


def _streamed(writer_cls, path, data):
    with writer_cls(path, data.shape, data.dtype) as writer:
        for r0 in range(0, len(data), 16):
            writer[r0 : r0 + 16] = data[r0 : r0 + 16]


WRITERS = {
    "index.png": lambda p: maps.write_index(p, LABELS),
    "index.tif": lambda p: maps.write_index(p, LABELS),
    "palette.png": lambda p: maps.write_palette_png(p, LABELS, PALETTE),
    "overlay.png": lambda p: maps.write_rgb(p, PALETTE[LABELS]),
    "probs.npy": lambda p: maps.write_probs(p, np.ones((40, 48, 3)) / 3),
    "probs.tif": lambda p: maps.write_probs(p, np.ones((40, 48, 3)) / 3),
    "summary.json": lambda p: maps.write_json(p, {"a": 1}),
    "metrics.csv": lambda p: maps.write_text(p, "a,b\n1,2\n"),
    "model.pt": lambda p: unetseg.save_checkpoint(_tiny(), p),
    "stream.tif": lambda p: _streamed(TiffTileWriter, p, np.zeros((40, 48), np.uint8)),
    "stream.npy": lambda p: _streamed(NpyWriter, p, np.zeros((40, 48, 2), np.float16)),
}


@needs_dev_full
@pytest.mark.parametrize("name", WRITERS)
def test_full_disk_is_one_error_naming_the_file_and_leaves_nothing(tmp_path, monkeypatch, name):
    """A real ENOSPC from the kernel, for every writer: OutputError naming the output, nothing left behind,
    and a file already at the final name kept as it was."""
    kept = tmp_path / f"kept_{name}"
    kept.write_bytes(b"previous version")
    fill_disk(monkeypatch)
    for path in (tmp_path / name, kept):
        with pytest.raises(OutputError) as info:
            WRITERS[name](path)
        message = str(info.value)
        assert message == f"cannot write {path}: No space left on device"
        assert info.value.fatal and is_fatal(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == [kept.name]
    assert kept.read_bytes() == b"previous version"


@needs_dev_full
def test_export_on_a_full_disk_is_one_error(tmp_path, monkeypatch):
    """torch's own file writer aborted the whole process (C++ terminate, exit 134) on a full disk."""
    fill_disk(monkeypatch)
    with pytest.raises(OutputError, match=r"m\.ts: No space left on device$"):
        export_model(_tiny(), tmp_path / "m.ts", format="torchscript", tile_size=32)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", WRITERS)
def test_outputs_follow_the_umask(tmp_path, name):
    old = os.umask(0o022)
    try:
        WRITERS[name](tmp_path / name)
        os.umask(0o002)
        WRITERS[name](tmp_path / f"group_{name}")
    finally:
        os.umask(old)
    assert oct((tmp_path / name).stat().st_mode & 0o777) == oct(0o644)
    assert oct((tmp_path / f"group_{name}").stat().st_mode & 0o777) == oct(0o664)


def test_a_write_that_stops_short_is_never_final(tmp_path):
    """RLIMIT_FSIZE cuts every file at 60 bytes (the writer sees EFBIG, OpenCV says nothing): no output may
    appear under its final name cut short."""
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (60, 60))\n"
        "import numpy as np\n"
        "from unetseg.io import maps\n"
        "labels = np.arange(40 * 48, dtype=np.uint8).reshape(40, 48) % 3\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        maps.write_index(name, labels)\n"
        "    except OSError as err:\n"
        "        print(err)\n"
    )
    names = [str(tmp_path / "a_index.png"), str(tmp_path / "a_index.tif")]
    done = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"cannot write {n}: File too large" for n in names]
    assert list(tmp_path.iterdir()) == []


def test_errors_wrapped_by_a_library_are_output_errors(tmp_path):
    """torch and tifffile raise their own error types around an OSError: still one OutputError with the cause."""
    with pytest.raises(OutputError, match=r"x\.pt: No space left on device$"):
        with atomic_path(tmp_path / "x.pt") as tmp:
            tmp.write_bytes(b"half")
            try:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos 640 vs 534")  # noqa: B904
    with pytest.raises(ValueError, match="a bug"):  # not a write failure: passed on as it is
        with atomic_path(tmp_path / "y.pt") as tmp:
            raise ValueError("a bug")
    assert list(tmp_path.iterdir()) == []


def test_an_empty_or_unverifiable_file_is_not_final(tmp_path):
    with pytest.raises(OutputError, match=r"empty\.png: nothing was written \(0 bytes\)"):
        with atomic_path(tmp_path / "empty.png"):
            pass
    with pytest.raises(OutputError, match=r"bad\.tif: "):
        with atomic_path(tmp_path / "bad.tif", verify=verify_tiff((4, 4), np.uint8)) as tmp:
            tmp.write_bytes(b"II*\0 not really a tiff")
    with pytest.raises(OutputError, match=r"small\.tif: read back shape \(2, 2\)"):
        with atomic_path(tmp_path / "small.tif", verify=verify_tiff((4, 4), np.uint8)) as tmp:
            tifffile.imwrite(tmp, np.zeros((2, 2), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_of_dead_runs_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    names = {
        f".scan.{dead_pid}.ab12cd_9.part.png": False,  # its process is gone: removed
        f".scan.2024.{dead_pid}.0x9y8z7w.part.tif": False,
        ".scan.abcdefgh.part.npy": False,  # written before temporaries carried a pid
        f".scan.{os.getpid()}.abcdefgh.part.png": True,  # a live process (this one) is still writing it
        ".notes.txt": True,  # not unetseg's
        "scan.abcdefgh.part.png": True,  # not hidden: not unetseg's
        "scan_index.png": True,
    }
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted(n for n, keep in names.items() if not keep)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, keep in names.items() if keep)


def test_stale_ome_zarr_folders_of_dead_runs_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".scan_index.ome.{int(dead.stdout)}.k3j_x9q2.part"
    live = tmp_path / f".other_index.ome.{os.getpid()}.a1b2c3d4.part"
    for folder in (stale, live):
        (folder / "0").mkdir(parents=True)
        (folder / "0" / ".zarray").write_text("{}")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and live.is_dir()
