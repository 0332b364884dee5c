"""Convert the uint8-quantized TFLite MobileNetV2 1.0/224 into float PyTorch weights.

The flatbuffer is read with the ``tflite`` package. Every CONV_2D / DEPTHWISE_CONV_2D operator, in
graph order, maps onto the next convolution of :class:`~chromatize.models.mobile.MobileNetV2Encoder`
(stem, blocks, 1x1 head) and the last one onto the ImageNet classifier. Weights are dequantized as
``(q - zero_point) * scale`` (per tensor or per output channel), int32 biases as ``q * scale``
(TFLite stores bias scale = input scale * weight scale). Batch norm is already folded and ReLU6 is
fused in the file; the uint8 activation ranges of the fused ReLU6 layers are exactly [0, 6], which
``nn.ReLU6`` reproduces.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from chromatize.errors import WeightsError
from chromatize.models.mobile import MobileNetV2Classifier, MobileNetV2Encoder, SameConv2d

BACKBONE_FILE = "mobilenet_v2_1.0_224_quant.tflite"
BACKBONE_SHA256 = "7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776"
#: Input quantization of the backbone: x_float = (u8 - 128) / 128.
INPUT_ZERO_POINT = 128
INPUT_SCALE = 1.0 / 128.0


@dataclass(frozen=True)
class ConvLayer:
    """One dequantized convolution of the TFLite graph, already in PyTorch layout."""

    kind: str  # "CONV_2D" or "DEPTHWISE_CONV_2D"
    name: str
    weight: np.ndarray  # (out, in/groups, kh, kw) float32
    bias: np.ndarray  # (out,) float32
    stride: int
    same_padding: bool
    relu6: bool


def _import_tflite():  # type: ignore[no-untyped-def]
    try:
        import tflite
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise WeightsError(
            "reading TFLite files needs the 'tflite' package: pip install 'chromatize[train]'"
        ) from exc
    return tflite


def _dequantize(tflite, graph, model, tensor_index: int, axis: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    tensor = graph.Tensors(tensor_index)
    raw = model.Buffers(tensor.Buffer()).DataAsNumpy()
    dtypes = {
        tflite.TensorType.UINT8: np.uint8,
        tflite.TensorType.INT8: np.int8,
        tflite.TensorType.INT32: np.int32,
        tflite.TensorType.FLOAT32: np.float32,
    }
    ttype = tensor.Type()
    if ttype not in dtypes:
        raise WeightsError(f"unsupported TFLite tensor type {ttype} in {tensor.Name().decode()!r}")
    shape = tuple(int(s) for s in tensor.ShapeAsNumpy())
    q = np.frombuffer(np.asarray(raw).tobytes(), dtype=dtypes[ttype]).reshape(shape)
    if ttype == tflite.TensorType.FLOAT32:
        return q.astype(np.float32)
    quant = tensor.Quantization()
    if quant is None or quant.ScaleLength() == 0:
        raise WeightsError(f"tensor {tensor.Name().decode()!r} has no quantization parameters")
    scale = quant.ScaleAsNumpy().astype(np.float64)
    zero = (
        quant.ZeroPointAsNumpy().astype(np.float64)
        if quant.ZeroPointLength()
        else np.zeros_like(scale)
    )
    if scale.size > 1:  # per-channel: broadcast along the quantized dimension
        bshape = [1] * len(shape)
        bshape[quant.QuantizedDimension() if axis < 0 else axis] = scale.size
        scale, zero = scale.reshape(bshape), zero.reshape(bshape)
    return ((q.astype(np.float64) - zero) * scale).astype(np.float32)


def read_conv_layers(path: str | Path) -> list[ConvLayer]:
    """All convolutions of a TFLite file, in graph order, dequantized to float32."""
    tflite = _import_tflite()
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"cannot read the TFLite backbone {path}: {exc}") from exc
    model = tflite.Model.GetRootAsModel(buf, 0)
    graph = model.Subgraphs(0)
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    layers: list[ConvLayer] = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code_entry = model.OperatorCodes(op.OpcodeIndex())
        code = max(code_entry.BuiltinCode(), code_entry.DeprecatedBuiltinCode())
        kind = names.get(code, str(code))
        if kind not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        opts_table = op.BuiltinOptions()
        opts = (
            tflite.Conv2DOptions() if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions()
        )
        opts.Init(opts_table.Bytes, opts_table.Pos)
        if opts.StrideH() != opts.StrideW():
            raise WeightsError(f"operator {i}: unequal strides are not supported")
        w_idx, b_idx = op.Inputs(1), op.Inputs(2)
        w = _dequantize(tflite, graph, model, w_idx, axis=0 if kind == "CONV_2D" else 3)
        b = _dequantize(tflite, graph, model, b_idx, axis=0)
        if kind == "CONV_2D":  # OHWI -> OIHW
            w = w.transpose(0, 3, 1, 2)
        else:  # 1HWC -> C1HW (depthwise multiplier 1)
            w = w.transpose(3, 0, 1, 2)
        act = opts.FusedActivationFunction()
        if act not in (tflite.ActivationFunctionType.NONE, tflite.ActivationFunctionType.RELU6):
            raise WeightsError(f"operator {i}: unsupported fused activation {act}")
        layers.append(
            ConvLayer(
                kind=kind,
                name=graph.Tensors(w_idx).Name().decode(),
                weight=np.ascontiguousarray(w),
                bias=b.reshape(-1),
                stride=opts.StrideH(),
                same_padding=opts.Padding() == tflite.Padding.SAME,
                relu6=act == tflite.ActivationFunctionType.RELU6,
            )
        )
    return layers


def _encoder_convs(encoder: MobileNetV2Encoder) -> Iterator[tuple[str, SameConv2d]]:
    for name, module in encoder.named_modules():
        if isinstance(module, SameConv2d):
            yield name, module


def _assign(target: torch.nn.Conv2d, layer: ConvLayer, where: str) -> dict[str, torch.Tensor]:
    if tuple(target.weight.shape) != layer.weight.shape:
        raise WeightsError(
            f"{where}: TFLite layer {layer.name!r} has shape {layer.weight.shape}, "
            f"the module expects {tuple(target.weight.shape)}"
        )
    if target.stride[0] != layer.stride:
        raise WeightsError(f"{where}: stride {layer.stride} in the file, {target.stride[0]} here")
    return {
        "weight": torch.from_numpy(layer.weight.copy()),
        "bias": torch.from_numpy(layer.bias.astype(np.float32).copy()),
    }


def convert(path: str | Path, *, check_hash: bool = True) -> dict[str, torch.Tensor]:
    """State dict of :class:`MobileNetV2Classifier` (keys ``encoder.*`` and ``classifier.*``)."""
    path = Path(path)
    if check_hash:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != BACKBONE_SHA256:
            raise WeightsError(f"{path} has sha256 {digest}, expected {BACKBONE_SHA256}")
    layers = read_conv_layers(path)
    reference = MobileNetV2Classifier()
    convs = list(_encoder_convs(reference.encoder))
    if len(layers) != len(convs) + 1:
        raise WeightsError(
            f"{path}: {len(layers)} convolutions, expected {len(convs) + 1} for MobileNetV2 1.0"
        )
    state: dict[str, torch.Tensor] = {}
    for (name, module), layer in zip(convs, layers[:-1], strict=True):
        if not layer.same_padding and module.kernel_size[0] > 1:
            raise WeightsError(f"{name}: expected SAME padding in {layer.name!r}")
        for key, value in _assign(module, layer, name).items():
            state[f"encoder.{name}.{key}"] = value
    for key, value in _assign(reference.classifier, layers[-1], "classifier").items():
        state[f"classifier.{key}"] = value
    return state


def load_classifier(path: str | Path) -> MobileNetV2Classifier:
    """The converted float ImageNet classifier (eval mode)."""
    model = MobileNetV2Classifier()
    model.load_state_dict(convert(path), strict=True)
    return model.eval()


def encoder_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Converted weights for :class:`MobileNetV2Encoder` (keys without the ``encoder.`` prefix)."""
    return {
        k.removeprefix("encoder."): v for k, v in convert(path).items() if k.startswith("encoder.")
    }
