"""Runs an ONNX model through ONNX Runtime on float32 inputs: ort_logits.py MODEL IN OUT.

IN holds little-endian f32 values of shape [N, C, H, W] (C, H, W from the model's input);
OUT receives the logits as little-endian f32. Used by tests/onnx.rs.
"""
import sys

import numpy as np
import onnxruntime as ort

model, src, dst = sys.argv[1:4]
sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
c, h, w = inp.shape[1], inp.shape[2], inp.shape[3]
x = np.fromfile(src, dtype="<f4").reshape(-1, c, h, w)
(y,) = sess.run(None, {inp.name: x})
y.astype("<f4").tofile(dst)
