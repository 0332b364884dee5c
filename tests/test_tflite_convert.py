"""The TFLite -> PyTorch backbone conversion: TensorFlow SAME padding against hand-computed cases,
and the real quantized MobileNetV2 file from ../shared."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chromatize.models.mobile import SameConv2d, same_padding


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (224, 3, 2, (0, 1)),  # even input, stride 2: the extra row/column goes after
        (7, 3, 2, (1, 1)),  # odd input: symmetric
        (112, 3, 1, (1, 1)),
        (6, 1, 2, (0, 0)),
        (5, 3, 2, (1, 1)),
    ],
)
def test_same_padding_hand_computed(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected


def test_same_conv_stride_2_pads_after_like_tensorflow():
    conv = SameConv2d(1, 1, 3, stride=2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    # TF SAME, 4x4, k=3, s=2: pad 0 before, 1 after -> windows rows/cols {0,1,2} and {2,3}
    expected = torch.tensor([[45.0, 39.0], [66.0, 50.0]])
    assert torch.equal(conv(x)[0, 0], expected)
    # PyTorch's symmetric padding=1 would give a different answer (rows/cols {-1,0,1}, {1,2,3})
    sym = torch.nn.functional.conv2d(x, conv.weight, padding=1, stride=2)[0, 0]
    assert not torch.equal(sym, expected)


def test_same_conv_stride_1_keeps_size_and_pads_symmetrically():
    conv = SameConv2d(1, 1, 3, stride=1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
    x = torch.ones(1, 1, 3, 5)
    y = conv(x)[0, 0]
    assert y.shape == (3, 5)
    assert y[0, 0] == 4 and y[1, 1] == 9 and y[2, 4] == 4


@pytest.fixture(scope="module")
def backbone(shared_dir):
    pytest.importorskip("tflite", reason="the converter needs the 'train' extra (tflite)")
    return shared_dir / "models" / "mobilenet_v2_1.0_224_quant.tflite"


def test_real_file_layers_are_dequantized_in_graph_order(backbone):
    import tflite

    from chromatize.models.tflite_convert import read_conv_layers

    layers = read_conv_layers(backbone)
    assert len(layers) == 53  # 36 CONV_2D + 17 DEPTHWISE_CONV_2D
    assert sum(layer.kind == "DEPTHWISE_CONV_2D" for layer in layers) == 17
    stem = layers[0]
    assert stem.weight.shape == (32, 3, 3, 3) and stem.stride == 2 and stem.relu6
    assert layers[1].weight.shape == (32, 1, 3, 3)  # depthwise -> (C, 1, kh, kw)
    assert layers[-1].weight.shape == (1001, 1280, 1, 1) and not layers[-1].relu6

    # Dequantization of the stem from the raw flatbuffer: (q - zero_point) * scale, and the
    # int32 bias scale is input_scale * weight_scale.
    model = tflite.Model.GetRootAsModel(backbone.read_bytes(), 0)
    graph = model.Subgraphs(0)
    op = graph.Operators(0)
    x_t, w_t, b_t = (graph.Tensors(op.Inputs(i)) for i in range(3))
    wq = w_t.Quantization()
    raw = model.Buffers(w_t.Buffer()).DataAsNumpy()
    q = np.asarray(raw, np.uint8).reshape(32, 3, 3, 3)  # OHWI
    first = (float(q[5, 1, 2, 0]) - wq.ZeroPointAsNumpy()[0]) * wq.ScaleAsNumpy()[0]
    assert stem.weight[5, 0, 1, 2] == pytest.approx(first, rel=1e-6)
    bias_scale = b_t.Quantization().ScaleAsNumpy()[0]
    in_scale = x_t.Quantization().ScaleAsNumpy()[0]
    assert bias_scale == pytest.approx(in_scale * wq.ScaleAsNumpy()[0], rel=1e-5)


@pytest.mark.slow
def test_converted_classifier_is_accurate_on_the_imagenet_sample(backbone, shared_dir):
    from chromatize.training.check_backbone import top1_accuracy

    torch.set_num_threads(2)
    accuracy, n = top1_accuracy(shared_dir, limit=120)
    assert n == 120
    assert accuracy >= 0.65  # the full 954-image sample gives 80.8 %


def test_encoder_weights_load_into_the_colorizer(backbone):
    from chromatize.models.mobile import build_mobile
    from chromatize.models.tflite_convert import encoder_state_dict

    model = build_mobile()
    missing = model.encoder.load_state_dict(encoder_state_dict(backbone), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
