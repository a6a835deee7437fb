"""Read the constant tensors (weights) of a TFLite model into numpy, offline.

The flatbuffer is parsed with the TFLite schema module that mediapipe itself ships
(`mediapipe.tasks.metadata.schema_py_generated`), so no TensorFlow is needed. Float16 weights
(what TFLite's fp16 post-training quantization stores, dequantized by DEQUANTIZE ops at run time)
are returned as float32, exactly as TFLite widens them; int8/uint8 tensors that carry a single
per-tensor scale are dequantized affinely when asked to.
"""

from __future__ import annotations

import numpy as np

# TFLite TensorType enum -> numpy dtype (little endian, as the format stores them).
_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),  # FLOAT32
    1: np.dtype("<f2"),  # FLOAT16
    2: np.dtype("<i4"),  # INT32
    3: np.dtype("u1"),  # UINT8
    4: np.dtype("<i8"),  # INT64
    6: np.dtype("?"),  # BOOL
    7: np.dtype("<i2"),  # INT16
    9: np.dtype("i1"),  # INT8
    10: np.dtype("<f8"),  # FLOAT64
    12: np.dtype("<u8"),  # UINT64
    15: np.dtype("<u4"),  # UINT32
    16: np.dtype("<u2"),  # UINT16
}


class TFLiteFormatError(ValueError):
    """The bytes are not a TFLite flatbuffer this reader understands."""


def tflite_schema():  # imported lazily: it pulls in mediapipe's package
    """The TFLite flatbuffer schema module mediapipe ships (`schema_py_generated`)."""
    from mediapipe.tasks.metadata import schema_py_generated

    return schema_py_generated


def parse_model(data: bytes, name: str = "model") -> object:
    """The root `Model` table of a TFLite flatbuffer; TFLiteFormatError when the bytes are not one."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise TFLiteFormatError(f"{name}: not a TFLite flatbuffer (file identifier 'TFL3' missing)")
    return tflite_schema().Model.GetRootAsModel(data, 0)


def read_tflite_tensors(
    data: bytes,
    subgraph: int = 0,
    dequantize: bool = True,
) -> dict[str, np.ndarray]:
    """{tensor name: array} for every tensor of `subgraph` that has constant data.

    With `dequantize`, float16 tensors come back as float32 and int8/uint8 tensors with a single
    quantization scale as float32 ((q - zero_point) * scale); otherwise the stored dtype is kept.
    Activations (tensors without a buffer) are left out.
    """
    model = parse_model(data)
    if not 0 <= subgraph < model.SubgraphsLength():
        raise TFLiteFormatError(f"subgraph {subgraph} out of range (model has {model.SubgraphsLength()})")
    graph = model.Subgraphs(subgraph)
    tensors: dict[str, np.ndarray] = {}
    for i in range(graph.TensorsLength()):
        tensor = graph.Tensors(i)
        array = tensor_array(model, tensor, data, dequantize)
        if array is not None:
            tensors[tensor.Name().decode()] = array
    return tensors


def tensor_array(model: object, tensor: object, data: bytes, dequantize: bool = True) -> np.ndarray | None:
    """The constant data of one tensor of a parsed model (None for an activation), widened as `read_tflite_tensors`."""
    raw = _buffer_bytes(model.Buffers(tensor.Buffer()), data)
    if not raw:
        return None
    dtype = _DTYPES.get(tensor.Type())
    if dtype is None:
        raise TFLiteFormatError(f"tensor {tensor.Name().decode()}: unsupported TFLite type {tensor.Type()}")
    shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
    array = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    return _dequantized(array, tensor.Quantization()) if dequantize else array


def _buffer_bytes(buffer: object, data: bytes) -> bytes:
    if buffer is None:
        return b""
    # Models over 2 GB keep buffers outside the flatbuffer, addressed by offset/size (offset 1 = none).
    offset = int(buffer.Offset()) if hasattr(buffer, "Offset") else 0
    if offset > 1:
        return data[offset : offset + int(buffer.Size())]
    if buffer.DataLength() == 0:
        return b""
    return buffer.DataAsNumpy().tobytes()


def _dequantized(array: np.ndarray, quantization: object) -> np.ndarray:
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if array.dtype.kind in "iu" and array.dtype.itemsize == 1 and quantization is not None:
        scales = quantization.ScaleAsNumpy() if quantization.ScaleLength() else None
        if scales is not None and len(scales) == 1:
            zero = quantization.ZeroPointAsNumpy()[0] if quantization.ZeroPointLength() else 0
            return ((array.astype(np.float32) - float(zero)) * float(scales[0])).astype(np.float32)
    return array
