#!/usr/bin/env python3
"""Writes a ResNet-18-shaped ONNX classifier with random He-initialized weights.

usage: resnet18-onnx.py OUT.onnx [--size 224] [--classes 1000] [--seed 0]

The torchvision layout (7x7/2 stem, 3x3/2 max pool, four stages of two basic blocks, 64 to
512 channels, global average pool, fully connected), opset 13, input `input` of shape
[N, 3, SIZE, SIZE] with a symbolic batch. BatchNorm stays unfolded (synthcal folds it at
import), with random running statistics so that folding is exercised. The first ten class
names are CIFAR-10's (so that a CIFAR image folder evaluates against it), then classN; the
ImageNet normalization is in the metadata. No pretrained weights: this checks shapes, speed
and agreement with ONNX Runtime, not accuracy. Needs the `onnx` and `numpy` packages.
"""
import argparse
import json

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save

CIFAR = ["airplane", "automobile", "bird", "cat", "deer",
         "dog", "frog", "horse", "ship", "truck"]


class Builder:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits = [], []

    def tensor(self, name, value):
        self.inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def conv_bn(self, x, name, cin, cout, k, stride, relu, gamma=1.0):
        std = np.sqrt(2.0 / (cin * k * k))  # He (fan-in), as torchvision's kaiming_normal_
        w = self.tensor(f"{name}.weight", self.rng.normal(0, std, (cout, cin, k, k)))
        self.nodes.append(helper.make_node(
            "Conv", [x, w], [f"{name}.out"], name=name,
            kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4))
        bn = name.replace("conv", "bn").replace("downsample.0", "downsample.1")
        args = [f"{name}.out"] + [self.tensor(f"{bn}.{p}", v) for p, v in [
            ("weight", gamma * self.rng.uniform(0.8, 1.2, cout)),
            ("bias", self.rng.normal(0, 0.05, cout)),
            ("running_mean", self.rng.normal(0, 0.1, cout)),
            ("running_var", self.rng.uniform(0.5, 1.5, cout)),
        ]]
        out = f"{bn}.out"
        self.nodes.append(helper.make_node(
            "BatchNormalization", args, [out], name=bn, epsilon=1e-5))
        if relu:
            self.nodes.append(helper.make_node("Relu", [out], [f"{bn}.relu"], name=f"{bn}.relu"))
            out = f"{bn}.relu"
        return out

    def block(self, x, name, cin, cout, stride):
        h = self.conv_bn(x, f"{name}.conv1", cin, cout, 3, stride, True)
        # A small last gamma keeps random residual sums from growing stage after stage.
        h = self.conv_bn(h, f"{name}.conv2", cout, cout, 3, 1, False, gamma=0.3)
        if stride != 1 or cin != cout:
            x = self.conv_bn(x, f"{name}.downsample.0", cin, cout, 1, stride, False)
        self.nodes.append(helper.make_node("Add", [h, x], [f"{name}.add"], name=f"{name}.add"))
        self.nodes.append(helper.make_node(
            "Relu", [f"{name}.add"], [f"{name}.out"], name=f"{name}.relu"))
        return f"{name}.out"


def resnet18(size, classes, seed):
    b = Builder(seed)
    x = b.conv_bn("input", "conv1", 3, 64, 7, 2, True)
    b.nodes.append(helper.make_node(
        "MaxPool", [x], ["maxpool"], name="maxpool",
        kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    x, cin = "maxpool", 64
    for stage, cout in enumerate([64, 128, 256, 512]):
        for i in range(2):
            stride = 2 if stage > 0 and i == 0 else 1
            x = b.block(x, f"layer{stage + 1}.{i}", cin, cout, stride)
            cin = cout
    b.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"], name="avgpool"))
    b.nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], name="flatten", axis=1))
    bound = 1 / np.sqrt(512)
    w = b.tensor("fc.weight", b.rng.uniform(-bound, bound, (classes, 512)))
    bias = b.tensor("fc.bias", b.rng.uniform(-bound, bound, classes))
    b.nodes.append(helper.make_node(
        "Gemm", ["flat", w, bias], ["logits"], name="fc", transB=1))
    graph = helper.make_graph(
        b.nodes, "resnet18",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    names = CIFAR[:classes] + [f"class{i}" for i in range(len(CIFAR), classes)]
    helper.set_model_props(model, {
        "synthcal.norm_mean": json.dumps([0.485, 0.456, 0.406]),
        "synthcal.norm_std": json.dumps([0.229, 0.224, 0.225]),
        "synthcal.class_names": json.dumps(names),
    })
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    save(resnet18(a.size, a.classes, a.seed), a.out)


if __name__ == "__main__":
    main()
