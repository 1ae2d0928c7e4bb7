"""Runs an ONNX model through ONNX Runtime on float32 inputs: ort_logits.py MODEL IN OUT [--as-written].

IN holds little-endian f32 values of shape [N, C, H, W] (C, H, W from the model's input);
OUT receives the logits as little-endian f32. With --as-written, graph optimizations are
off, so each QuantizeLinear/DequantizeLinear pair is computed in float as the file states it;
by default ONNX Runtime fuses them into its integer kernels, whose AVX2 path (no VNNI) sums
pairs of u8 x s8 products into 16 bits and may saturate. Used by the tests.
"""
import sys

import numpy as np
import onnxruntime as ort

model, src, dst = sys.argv[1:4]
options = ort.SessionOptions()
if "--as-written" in sys.argv[4:]:
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
sess = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
c, h, w = inp.shape[1], inp.shape[2], inp.shape[3]
x = np.fromfile(src, dtype="<f4").reshape(-1, c, h, w)
(y,) = sess.run(None, {inp.name: x})
y.astype("<f4").tofile(dst)
