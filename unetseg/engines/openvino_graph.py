"""The forward stage inside an OpenVINO graph: raw tiles in, labels or probabilities out.

:func:`fused_model` wraps a model graph (input N x C x H x W float32 normalised pixels, output logits) so that it
takes the tiles as they leave the reader, N x H x W x C in the image's dtype (and, where pixels may be invalid,
their N x H x W mask), and returns N x H x W labels (uint8 up to 256 classes, else int32) or N x K x H x W
probabilities. The conversion, the normalisation (:meth:`unetseg.data.normalization.Normalization.affine`), the
layout change, the argmax and the softmax then run in OpenVINO's threads, fused with the convolutions next to
them, and the host hands over a quarter of the bytes and takes back a fraction of them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .contract import ForwardSpec


def ov_input_type(dtype: np.dtype) -> Any:
    """The OpenVINO element type raw tiles of ``dtype`` enter as, or None where the forward stage stays in torch."""
    import openvino as ov

    return {np.dtype(np.uint8): ov.Type.u8, np.dtype(np.int8): ov.Type.i8, np.dtype(np.uint16): ov.Type.u16,
            np.dtype(np.int16): ov.Type.i16, np.dtype(np.int32): ov.Type.i32, np.dtype(np.float16): ov.Type.f16,
            np.dtype(np.float32): ov.Type.f32}.get(np.dtype(dtype))


def output_classes(model: Any) -> int:
    """K, the class channels of ``model``'s logits (N x K x H x W)."""
    return int(model.outputs[0].get_partial_shape()[1].get_length())


def fused_model(model: Any, spec: ForwardSpec) -> Any:
    """``model`` (an ``openvino.Model``: normalised NCHW float32 -> logits; left unchanged) as the whole forward
    stage of ``spec`` (a :attr:`ForwardSpec.plain` one): inputs ``tiles`` (N x H x W x C, the spec's dtype;
    N x D x H x W x C for ``spec.dims == 3``) and, with an invalid rule, ``invalid`` (N x H x W boolean, N x D x H x W
    for volumes: those pixels enter the model as 0, the normalised mean); output ``labels`` or ``probs``."""
    import openvino as ov
    import openvino.opset11 as ops11
    import openvino.opset13 as ops

    model = model.clone()
    channels = spec.channels
    dims = spec.dims
    tiles = ops.parameter([-1] * (dims + 1) + [channels], ov_input_type(spec.dtype), name="tiles")
    per_channel = (1,) * (dims + 1) + (-1,)
    mean = ops.constant(np.asarray(spec.mean, np.float32).reshape(per_channel))
    inv = ops.constant(np.asarray(spec.inv, np.float32).reshape(per_channel))
    x = ops.convert(tiles, ov.Type.f32)
    if spec.low is not None and spec.high is not None:  # CT: clipped raw values first
        x = ops.minimum(ops.maximum(x, ops.constant(np.asarray(spec.low, np.float32).reshape(per_channel))),
                        ops.constant(np.asarray(spec.high, np.float32).reshape(per_channel)))
    x = ops.multiply(ops.subtract(x, mean), inv)
    parameters = [tiles]
    if spec.invalid is not None:
        invalid = ops.parameter([-1] * (dims + 1), ov.Type.boolean, name="invalid")
        x = ops.select(ops.unsqueeze(invalid, ops.constant(np.int64(dims + 1))), ops.constant(np.float32(0)), x)
        parameters.append(invalid)
    x = ops.transpose(x, ops.constant(np.array([0, dims + 1, *range(1, dims + 1)], np.int64)))
    (old,) = model.get_parameters()
    for target in list(old.output(0).get_target_inputs()):
        target.replace_source_output(x.output(0))
    logits = model.get_results()[0].input_value(0)
    classes = output_classes(model)
    if spec.labels:
        if classes == 1:
            picked = ops.greater(logits, ops.constant(np.float32(0)))
        else:  # stable: ties go to the lower class index, as torch's argmax
            picked = ops11.topk(logits, ops.constant(np.int64(1)), 1, "max", "value", ov.Type.i32,
                                stable=True).output(1)
        out = ops.convert(ops.squeeze(picked, ops.constant(np.array([1], np.int64))),
                          ov.Type.u8 if classes <= 256 else ov.Type.i32)
        name = "labels"
    else:
        out = ops.sigmoid(logits) if classes == 1 else ops.softmax(logits, 1)
        name = "probs"
    out.output(0).get_tensor().set_names({name})
    return ov.Model([out.output(0)], parameters, f"unetseg-{name}")
