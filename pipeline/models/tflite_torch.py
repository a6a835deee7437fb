"""A TFLite model's graph run by torch: batched, on any torch device, weights read offline from the file.

MediaPipe's vision models (the BlazeFace detector, the face mesh) are convolutional graphs of a dozen float
ops with fp16 weights. Rather than rewriting each architecture by hand (and risking a transposed kernel or a
missed residual), this reads the graph itself from the flatbuffer, op by op, and replays it with torch
functions in NCHW layout; any batch size works although the file says batch 1. An op this reader does not
know is a clear error when the model loads, never a wrong result.

Layout: TFLite is NHWC. 4-D activations are kept NCHW here (what torch's convolutions want) and turned back
into NHWC where the graph leaves the 4-D world (RESHAPE, model outputs), so every op sees TFLite's semantics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.tflite_weights import TFLiteFormatError, parse_model, tensor_array, tflite_schema

# TFLite fused activations (ActivationFunctionType).
_ACTIVATIONS: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {
    0: lambda x: x,
    1: F.relu,
    2: lambda x: x.clamp(-1.0, 1.0),
    3: lambda x: x.clamp(0.0, 6.0),
}
_SAME, _VALID = 0, 1


@dataclass
class _Op:
    kind: str
    inputs: list[int]
    outputs: list[int]
    options: object | None


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's SAME padding along one axis: the odd pixel goes after, not before."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _to_nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1) if x.ndim == 4 else x


def _to_nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2) if x.ndim == 4 else x


class TFLiteGraph(nn.Module):
    """`forward(x)`: the graph's first input (B, H, W, C) float -> its outputs, each (B, ...) as TFLite shapes them."""

    def __init__(self, data: bytes, name: str = "model") -> None:
        super().__init__()
        schema = tflite_schema()
        model = parse_model(data, name)
        graph = model.Subgraphs(0)
        self.name = name
        codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        self.inputs = [int(i) for i in graph.InputsAsNumpy()]
        self.outputs = [int(i) for i in graph.OutputsAsNumpy()]
        self.shapes = {i: tuple(int(d) for d in graph.Tensors(i).ShapeAsNumpy()) if graph.Tensors(i).ShapeLength()
                       else () for i in range(graph.TensorsLength())}
        self.ops: list[_Op] = []
        constants: dict[int, np.ndarray] = {}
        for i in range(graph.TensorsLength()):
            array = tensor_array(model, graph.Tensors(i), data)
            if array is not None:
                constants[i] = array
        aliases: dict[int, int] = {}  # DEQUANTIZE outputs: the constant they widen
        for k in range(graph.OperatorsLength()):
            op = graph.Operators(k)
            code = model.OperatorCodes(op.OpcodeIndex())
            kind = codes.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
            inputs = [int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else []
            outputs = [int(i) for i in op.OutputsAsNumpy()]
            if kind == "DEQUANTIZE" and inputs[0] in constants:
                aliases[outputs[0]] = inputs[0]
                continue
            if kind not in _RUNNERS:
                raise TFLiteFormatError(f"{name}: op {k} is {kind}, which this torch reader does not run")
            inputs = [aliases.get(i, i) for i in inputs]
            options = _options(schema, kind, op)
            if kind == "PAD":  # the paddings are a constant: read once, as Python ints
                options, inputs = [[int(v) for v in row] for row in constants[inputs[1]].tolist()], inputs[:1]
            self.ops.append(_Op(kind, inputs, outputs, options))
        # Constants become buffers (they follow .to(device)), laid out as the op that reads them wants.
        self._constant_keys: dict[int, str] = {}
        for op in self.ops:
            for position, index in enumerate(op.inputs):
                if index in constants and index not in self._constant_keys:
                    key = f"c{index}"
                    value = _layout(op.kind, position, constants[index], op.options)
                    self.register_buffer(key, value, persistent=False)
                    self._constant_keys[index] = key

    def constant(self, index: int) -> torch.Tensor:
        return getattr(self, self._constant_keys[index])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        values: dict[int, torch.Tensor] = {self.inputs[0]: _to_nchw(x)}
        for op in self.ops:
            args = [values[i] if i in values else self.constant(i) if i in self._constant_keys else None
                    for i in op.inputs]
            values[op.outputs[0]] = _RUNNERS[op.kind](self, op, args)
        return [_to_nhwc(values[i]) for i in self.outputs]


def _options(schema, kind: str, op) -> object | None:
    table = op.BuiltinOptions()
    cls = {"CONV_2D": schema.Conv2DOptions, "DEPTHWISE_CONV_2D": schema.DepthwiseConv2DOptions,
           "MAX_POOL_2D": schema.Pool2DOptions,
           "ADD": schema.AddOptions, "MUL": schema.MulOptions,
           "CONCATENATION": schema.ConcatenationOptions}.get(kind)
    if cls is None or table is None:
        return None
    options = cls()
    options.Init(table.Bytes, table.Pos)
    return options


def _layout(kind: str, position: int, array: np.ndarray, options) -> torch.Tensor:
    """A constant in the layout torch's op wants: kernels (O, I, kH, kW), per-channel vectors (1, C, 1, 1)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array.astype(np.float32) if array.dtype.kind == "f" else array))
    if kind == "CONV_2D" and position == 1:
        # (O, kH, kW, I) -> (O, I, kH, kW), kept channels-last in memory like the activations
        return tensor.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    if kind == "DEPTHWISE_CONV_2D" and position == 1:
        # (1, kH, kW, C*m) -> (C*m, 1, kH, kW)
        return tensor.permute(3, 0, 1, 2).contiguous(memory_format=torch.channels_last)
    if kind == "PRELU" and position == 1:
        return tensor.reshape(1, -1, 1, 1)  # alpha (1, 1, C) broadcast over NHWC -> over NCHW channels
    return tensor


def _conv(graph: TFLiteGraph, op: _Op, args: list, groups: int) -> torch.Tensor:
    x, weight, bias = args[0], args[1], args[2] if len(args) > 2 else None
    o = op.options
    stride = (o.StrideH(), o.StrideW())
    dilation = (o.DilationHFactor(), o.DilationWFactor())
    padding = (0, 0)
    if o.Padding() == _SAME:
        top, bottom = _same_padding(x.shape[2], weight.shape[2], stride[0], dilation[0])
        left, right = _same_padding(x.shape[3], weight.shape[3], stride[1], dilation[1])
        if top == bottom and left == right:
            padding = (top, left)  # symmetric: the convolution pads itself (faster than a padded copy)
        else:
            x = F.pad(x, (left, right, top, bottom))
    out = F.conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
    return _ACTIVATIONS[o.FusedActivationFunction()](out)


def _depthwise(graph: TFLiteGraph, op: _Op, args: list) -> torch.Tensor:
    return _conv(graph, op, args, groups=args[0].shape[1])


def _max_pool(graph: TFLiteGraph, op: _Op, args: list) -> torch.Tensor:
    x, o = args[0], op.options
    kernel, stride = (o.FilterHeight(), o.FilterWidth()), (o.StrideH(), o.StrideW())
    if o.Padding() == _SAME:
        top, bottom = _same_padding(x.shape[2], kernel[0], stride[0], 1)
        left, right = _same_padding(x.shape[3], kernel[1], stride[1], 1)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
    return _ACTIVATIONS[o.FusedActivationFunction()](F.max_pool2d(x, kernel, stride))


def _binary(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
    def run(graph: TFLiteGraph, op: _Op, args: list) -> torch.Tensor:
        a, b = args
        if a.ndim == 4 and b.ndim == 4 and b.shape[1:] != a.shape[1:] and op.inputs[1] in graph._constant_keys:
            b = _to_nchw(b)  # a constant 4-D operand is stored NHWC
        out = fn(a, b)
        activation = op.options.FusedActivationFunction() if op.options is not None else 0
        return _ACTIVATIONS[activation](out)

    return run


def _pad(graph: TFLiteGraph, op: _Op, args: list) -> torch.Tensor:
    x, paddings = args[0], op.options
    if x.ndim == 4:
        if paddings[0] != [0, 0]:
            raise TFLiteFormatError(f"{graph.name}: PAD over the batch axis is not supported")
        (top, bottom), (left, right), (front, back) = paddings[1], paddings[2], paddings[3]
        return F.pad(x, (left, right, top, bottom, front, back))
    flat = [v for row in reversed(paddings[1:]) for v in row]
    return F.pad(x, flat)


def _reshape(graph: TFLiteGraph, op: _Op, args: list) -> torch.Tensor:
    x = _to_nhwc(args[0])
    shape = graph.shapes[op.outputs[0]]
    return _to_nchw(x.reshape(x.shape[0], *shape[1:]))


def _concatenation(graph: TFLiteGraph, op: _Op, args: list) -> torch.Tensor:
    axis = op.options.Axis()
    rank = args[0].ndim
    axis = axis % rank
    if rank == 4:
        axis = (0, 2, 3, 1)[axis]
    return _ACTIVATIONS[op.options.FusedActivationFunction()](torch.cat(args, dim=axis))


def _prelu(graph: TFLiteGraph, op: _Op, args: list) -> torch.Tensor:
    x, alpha = args
    return F.prelu(x, alpha.reshape(-1)) if x.ndim == 4 and alpha.numel() == x.shape[1] else torch.where(
        x >= 0, x, x * alpha)


_RUNNERS: dict[str, Callable[[TFLiteGraph, _Op, list], torch.Tensor]] = {
    "CONV_2D": lambda graph, op, args: _conv(graph, op, args, groups=1),
    "DEPTHWISE_CONV_2D": _depthwise,
    "MAX_POOL_2D": _max_pool,
    "ADD": _binary(torch.add),
    "MUL": _binary(torch.mul),
    "PAD": _pad,
    "RESHAPE": _reshape,
    "CONCATENATION": _concatenation,
    "RELU": lambda graph, op, args: F.relu(args[0]),
    "RELU6": lambda graph, op, args: args[0].clamp(0.0, 6.0),
    "PRELU": _prelu,
    "LOGISTIC": lambda graph, op, args: torch.sigmoid(args[0]),
}
