"""The napari plugin (``pip install 'unetseg[napari]'``): Segment and Train dock widgets, and a reader and
writer for unetseg's maps. napari finds it through ``napari.yaml`` (npe2); the library never imports it.

* :mod:`.segmenting`, :mod:`.training`, :mod:`.layers`, :mod:`.io`: the work, without Qt (tests and scripts
  call them directly);
* :mod:`.widgets`: the dock widgets that run it in napari thread workers.
"""
import sys

# napari's canvas on Mesa's OpenGL (VMs, remote desktops, Xvfb) maps Mesa's libLLVM into the process; loading
# triton's own LLVM after it (torch._dynamo imports triton, and torchvision imports torch._dynamo) segfaults
# the viewer. Plugins load after the canvas exists, so triton is kept out of a napari process that has not
# loaded it yet: CPU inference and torch.compile on CPUs need none, and a CUDA compile falls back to eager.
if "triton" not in sys.modules:
    sys.modules["triton"] = None  # type: ignore[assignment]
