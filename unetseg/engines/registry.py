"""Inference engines: what runs the model's graph on a batch of tiles. One registry, one contract.

Every engine is built from the torch :class:`~unetseg.engines.graph.InferenceGraph` (eval copy, batch norm
folded) and is called the same way: ``engine(x)``, NCHW float32 tiles -> NCHW float32 logits (a torch tensor on
the engine's device). ``name``, ``device``, ``precision`` and ``compiled`` say what ran.

- ``torch``: the graph itself (oneDNN on CPUs, cuDNN on GPUs; optionally ``torch.compile``).
- ``openvino``: the folded fp32 graph handed to OpenVINO (through ONNX in memory: 0.5 s where
  ``ov.convert_model``'s TorchScript tracing took 2-8 s), compiled for the CPU once per input shape with the
  precision pinned to unetseg's (``INFERENCE_PRECISION_HINT``; fp32 in ``ACCURACY`` mode), on torch's thread count.
  ``amp="int8"`` quantises it once per process with NNCF (:mod:`.quantize`).
- ``onnxruntime``: the same ONNX graph in an ONNX Runtime session (fp32; CUDA's provider on GPUs).

``engine="auto"`` (:func:`unetseg.tiling.autotile.engine_and_tile`) times each usable engine on the plan's tile
shape once per process, model, device, precision and shape, and takes the fastest.
"""
from __future__ import annotations

import functools
import importlib.util
import io
import os
import queue
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ..errors import UnetsegError
from ..models.deployed import IRModel
from ..models.geometry import Geometry
from ..models.precision import Precision
from .contract import ForwardSpec, Started, TileOutput
from .graph import InferenceGraph
from .quantize import QuantizedModel, quantize

ENGINE_AUTO = "auto"


class Engine(Protocol):
    """``engine(x)``: NCHW float32 tiles -> NCHW float32 logits on ``device``."""

    name: str
    device: torch.device
    precision: Precision
    compiled: bool

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class EngineSpec:
    """A registered engine: its name, the Python packages it needs (the graph reaches the non-torch engines as
    ONNX, so they need ``onnx`` too), the devices and precisions it runs, its
    builder (torch graph -> engine) and a line of help."""

    name: str
    packages: tuple[str, ...]
    devices: tuple[str, ...]
    precisions: tuple[str, ...]
    build: Callable[..., Engine]
    help: str

    def missing(self) -> list[str]:
        return [p for p in self.packages if importlib.util.find_spec(p) is None]

    def why_not(self, device: torch.device, precision: Precision) -> str | None:
        """Why this engine cannot run here (one line), or None when it can."""
        missing = self.missing()
        if missing:
            extra = "onnx" if self.name == "onnxruntime" else self.name
            return (f"engine={self.name!r} needs the {', '.join(repr(p) for p in missing)} package(s): install "
                    f"unetseg[{extra}] (e.g. `uv pip install {' '.join(missing)}`)")
        if device.type not in self.devices:
            return f"engine={self.name!r} runs on {', '.join(self.devices)}, not {device.type}"
        if precision.name not in self.precisions:
            return (f"engine={self.name!r} does not run amp={precision.name!r} "
                    f"(it runs {', '.join(self.precisions)})")
        return None


ENGINES: dict[str, EngineSpec] = {}


def register_engine(spec: EngineSpec) -> EngineSpec:
    if spec.name in ENGINES or spec.name == ENGINE_AUTO:
        raise ValueError(f"engine {spec.name!r} is already registered")
    ENGINES[spec.name] = spec
    return spec


def engine_choices() -> tuple[str, ...]:
    """The values ``engine=`` / ``--engine`` take: "auto" and every registered engine."""
    return (ENGINE_AUTO, *ENGINES)


def check_engine(engine: str) -> str:
    if engine not in engine_choices():
        raise UnetsegError(f"engine={engine!r} is not one of {', '.join(engine_choices())}")
    return engine


def usable_engines(device: torch.device, precision: Precision) -> list[str]:
    """The registered engines that can run on ``device`` at ``precision`` here, torch first."""
    return [name for name, spec in ENGINES.items() if spec.why_not(device, precision) is None]


_BUILT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def build_engine(graph: InferenceGraph, name: str, quantized: QuantizedModel | None = None) -> Engine:
    """The engine ``name`` over ``graph`` (cached with the graph, so a model is converted once per process), running
    the ``quantized`` model when one is given (OpenVINO); a one-line UnetsegError when it cannot run on the graph's
    device and precision."""
    spec = ENGINES[check_engine(name)]
    problem = spec.why_not(graph.device, graph.precision)
    if problem:
        raise UnetsegError(problem)
    if name == "torch":
        return graph
    built = _BUILT.setdefault(graph, {})
    key = (name, quantized)
    if key not in built:
        built[key] = spec.build(graph) if quantized is None else spec.build(graph, quantized)
    return built[key]


# -------------------------------------------------------------------------------------------------- ONNX graph
_EXPORT_LOCK = threading.Lock()  # torch's ONNX exporter keeps global state: one export at a time per process


def onnx_bytes(net: nn.Module, channels: int, hw: tuple[int, ...], dynamic: bool) -> bytes:
    """``net`` (fp32, eval) as an ONNX model in memory: input ``x`` 1 x C x H x W (1 x C x D x H x W for a
    3-tuple ``hw``), output ``logits``; batch (and, when ``dynamic``, the spatial axes) left dynamic."""
    spatial = ("depth", "height", "width")[-len(hw):]
    axes = {0: "batch", **({2 + i: name for i, name in enumerate(spatial)} if dynamic else {})}
    encoded = io.BytesIO()
    with _EXPORT_LOCK, torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(net, (torch.zeros(1, channels, *hw),), encoded, input_names=["x"],
                          output_names=["logits"], dynamic_axes={"x": axes, "logits": axes}, dynamo=False)
    return encoded.getvalue()


EXAMPLE_SIDE_3D = 64  # the input side a dynamic-shape 3D graph is traced at


class ShapeCache:
    """What an engine runs per input shape, built on first use: the graph is loaded from ONNX once (same
    padding: dynamic height/width) or once per tile size (valid padding, whose crops tracing fixes), then
    specialised per shape (and variant: the plain graph, or a fused forward stage).

    Only the :data:`KEPT_SHAPES` most recently used specialisations are kept: each holds its compiled code and
    the activation memory of its infer requests, and choosing a tile size specialises every candidate once."""

    KEPT_SHAPES = 2

    def __init__(self, graph: InferenceGraph, load: Callable[[bytes], Any],
                 specialise: Callable[[Any, tuple[int, ...]], Any], loaded: Any = None) -> None:
        self.net, self.load, self.specialise = graph.fp32, load, specialise
        self.channels = _in_channels(graph.fp32)
        self.geometry = Geometry.of(graph.fp32)
        self.dynamic = self.geometry.padding == "same" or loaded is not None
        self._loaded: dict[tuple[int, ...], Any] = {} if loaded is None else {(): loaded}
        self._built: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()  # Dask's threaded workers share one engine

    def get(self, shape: tuple[int, ...], hw: tuple[int, int] | None = None,
            specialise: Callable[[Any, tuple[int, ...]], Any] | None = None, variant: Any = None) -> Any:
        """What runs ``shape`` inputs: ``specialise`` (default the cache's) of the graph loaded for tiles of ``hw``
        (default ``shape[2:]``, an NCHW shape's), cached per ``variant`` and shape."""
        with self._lock:
            key = (variant, shape)
            if key in self._built:
                self._built.move_to_end(key)
                return self._built[key]
            hw = tuple(shape[2:]) if hw is None else hw
            built = (specialise or self.specialise)(self.loaded(hw), shape)
            self._built[key] = built
            while len(self._built) > self.KEPT_SHAPES:
                self._built.popitem(last=False)
            return built

    def loaded(self, hw: tuple[int, ...]) -> Any:
        """The graph as loaded for tiles of ``hw`` (H, W or D, H, W; one for every size when its spatial axes are
        dynamic, traced at a small example size: a 3D model's 512^3 example would be 0.5 GB of zeros)."""
        key = () if self.dynamic else tuple(hw)
        if key not in self._loaded:
            size = (tuple(g.example_size(EXAMPLE_SIDE_3D if len(hw) == 3 else None) for g in Geometry.axes(self.net))
                    if self.dynamic else tuple(hw))
            self._loaded[key] = self.load(onnx_bytes(self.net, self.channels, size, self.dynamic))
        return self._loaded[key]


def _in_channels(net: nn.Module) -> int:
    channels = getattr(net, "in_channels", None)
    if channels is None:
        first = next((m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))), None)
        if first is None:
            raise UnetsegError("the model has no Conv2d/Conv3d layer to read its input channels from")
        channels = first.in_channels
    return int(channels)


# ------------------------------------------------------------------------------------------------------ OpenVINO
@functools.cache
def openvino_core() -> Any:
    """The process's one ``openvino.Core`` (each Core keeps its own plugin and thread pools)."""
    import openvino as ov

    return ov.Core()


_QUANTIZED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def quantized_model(graph: InferenceGraph, tile_shape: tuple[int, int],
                    calibration: Callable[[], Any]) -> QuantizedModel:
    """The int8 model of ``graph`` for ``tile_shape`` tiles, quantised on ``calibration()`` (N x C x H x W float32
    tiles) the first time it is asked for in this process (:func:`unetseg.engines.quantize.quantize`)."""
    done = _QUANTIZED.setdefault(graph, {})
    if tile_shape not in done:
        tiles = calibration()
        onnx = onnx_bytes(graph.fp32, _in_channels(graph.fp32), tile_shape, dynamic=False)
        done[tile_shape] = quantize(graph.fp32, onnx, tiles, OPENVINO_PRECISION[graph.precision.name])
    return done[tile_shape]


OPENVINO_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "bf16"}


class OpenVINOEngine:
    """The graph run by OpenVINO's CPU plugin: static shapes (one compiled model per tile shape), the precision
    pinned, torch's thread count; asynchronous, so a caller merges one result while the next batch runs
    (:meth:`start`). With a ``quantized`` model (:mod:`.quantize`) it runs that one instead; an
    int8-precision graph without one runs in float (what tile-size timing needs)."""

    name = "openvino"
    compiled = False

    def __init__(self, graph: InferenceGraph, quantized: QuantizedModel | None = None) -> None:
        self.device, self.precision = graph.device, graph.precision
        self._core = openvino_core()
        base = quantized.read(self._core) if quantized is not None else None
        if base is None and isinstance(graph.fp32, IRModel):  # an exported IR runs as it is
            base = graph.fp32.read(self._core)
        self._shapes = ShapeCache(graph, functools.partial(self._core.read_model, weights=b""), self._compile, base)

    def config(self) -> dict[str, str]:
        hint = OPENVINO_PRECISION[self.precision.name]
        cfg = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY",
               "INFERENCE_NUM_THREADS": str(torch.get_num_threads())}
        if hint == "f32":
            cfg["EXECUTION_MODE_HINT"] = "ACCURACY"
        if torch.get_num_threads() < (os.cpu_count() or 1):
            # a process given part of the cores (a Dask worker): OpenVINO would pin its threads to the first cores,
            # the same ones in every such process (2 workers x 1 thread on 2 cores: both on core 0, 0.64x one process)
            cfg["ENABLE_CPU_PINNING"] = "NO"
        return cfg

    def _compile(self, loaded: Any, shape: tuple[int, ...]) -> tuple[Any, queue.SimpleQueue]:
        model = loaded.clone()
        model.reshape({model.inputs[0].get_any_name(): list(shape)})
        return self._core.compile_model(model, "CPU", self.config()), queue.SimpleQueue()

    def _run(self, compiled: Any, idle: queue.SimpleQueue, inputs: dict[int, np.ndarray]
             ) -> Callable[[], torch.Tensor]:
        """Start ``inputs`` on an idle infer request of ``compiled`` (made when none is idle); the returned function
        waits, gives the output as a torch tensor and hands the request back. Thread-safe."""
        try:
            request = idle.get_nowait()
        except queue.Empty:
            request = compiled.create_infer_request()
        request.start_async(inputs, share_inputs=True)
        done: list[torch.Tensor] = []

        def result(held: dict[int, np.ndarray] = inputs) -> torch.Tensor:  # the request reads ``held`` until wait()
            if not done:
                request.wait()
                done.append(torch.from_numpy(request.get_output_tensor(0).data.copy()))
                idle.put(request)
            return done[0]

        return result

    def start(self, x: torch.Tensor) -> Callable[[], torch.Tensor]:
        """Start ``x`` (NCHW float32, CPU) running; the returned function waits and gives its logits."""
        array = x.detach().float().contiguous().numpy()
        return self._run(*self._shapes.get(tuple(array.shape)), {0: array})

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.start(x)()

    def fused(self, spec: ForwardSpec) -> Callable[[torch.Tensor, torch.Tensor | None], Started] | None:
        """The whole forward stage of ``spec`` in OpenVINO's graph (:func:`.openvino_graph.fused_model`): raw
        N x H x W x C tiles (N x D x H x W x C for volumes) and their invalid mask in, labels or probabilities out,
        asynchronously; None when the tiles' dtype is not one OpenVINO takes."""
        from .openvino_graph import fused_model, output_classes, ov_input_type

        if ov_input_type(spec.dtype) is None:
            return None

        def build(loaded: Any, shape: tuple[int, ...]) -> tuple[Any, queue.SimpleQueue, int]:
            model = fused_model(loaded, spec)
            shapes = {model.inputs[0]: list(shape)}
            if len(model.inputs) > 1:
                shapes[model.inputs[1]] = list(shape[:-1])
            model.reshape(shapes)
            return self._core.compile_model(model, "CPU", self.config()), queue.SimpleQueue(), output_classes(loaded)

        def start(tiles: torch.Tensor, invalid: torch.Tensor | None) -> Started:
            array = tiles.contiguous().numpy()
            compiled, idle, classes = self._shapes.get(tuple(array.shape), tuple(array.shape[1:-1]), build, spec)
            inputs = {0: array} if invalid is None else {0: array, 1: invalid.contiguous().numpy()}
            result = self._run(compiled, idle, inputs)

            def output() -> TileOutput:
                out = result()
                return (TileOutput(out, None, invalid, classes) if spec.labels
                        else TileOutput(None, out, invalid, classes))

            return output

        return start


# -------------------------------------------------------------------------------------------------- ONNX Runtime
class OnnxRuntimeEngine:
    """The graph in an ONNX Runtime session (fp32; the CUDA provider on GPUs), one session per tile shape for
    valid-padding models, one in all for same-padding ones; torch's thread count."""

    name = "onnxruntime"
    compiled = False

    def __init__(self, graph: InferenceGraph) -> None:
        self.device, self.precision = graph.device, graph.precision
        self._shapes = ShapeCache(graph, self._session, lambda session, _shape: session)

    def _session(self, onnx: bytes) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        providers = ["CUDAExecutionProvider"] if self.device.type == "cuda" else ["CPUExecutionProvider"]
        return ort.InferenceSession(onnx, options, providers=providers)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().float().contiguous().cpu().numpy()
        logits = self._shapes.get(tuple(array.shape)).run(None, {"x": array})[0]
        return torch.from_numpy(logits).to(self.device)


register_engine(EngineSpec("torch", (), ("cpu", "cuda", "mps"), ("fp32", "bf16", "fp16"), lambda graph: graph,
                           "PyTorch (oneDNN/cuDNN), optionally torch.compile"))
register_engine(EngineSpec("openvino", ("openvino", "onnx"), ("cpu",), ("fp32", "bf16", "fp16", "int8"), OpenVINOEngine,
                           "OpenVINO's CPU plugin, compiled per tile shape (int8 with NNCF)"))
register_engine(EngineSpec("onnxruntime", ("onnxruntime", "onnx"), ("cpu", "cuda"), ("fp32",), OnnxRuntimeEngine,
                           "ONNX Runtime (fp32)"))
