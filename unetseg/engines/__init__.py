"""What runs the model on a batch of tiles: one registry (:func:`register_engine`), one contract
(:class:`ForwardSpec` describes the raw tiles in and what comes out, :class:`TileOutput` holds it), engines chosen by measurement per device and precision:
torch (the folded, fused :class:`InferenceGraph`), OpenVINO (+ int8 quantisation), ONNX Runtime."""
from .allocator import keep_freed_memory, release_freed_memory, return_freed_memory
from .contract import ForwardSpec, InvalidRule, TileOutput
from .graph import InferenceGraph, inference_graph
from .registry import Engine, EngineSpec, build_engine, engine_choices, register_engine, usable_engines

__all__ = [
    "Engine", "EngineSpec", "ForwardSpec", "InferenceGraph", "InvalidRule", "TileOutput", "build_engine",
    "engine_choices", "inference_graph", "keep_freed_memory", "register_engine", "release_freed_memory",
    "return_freed_memory", "usable_engines",
]
