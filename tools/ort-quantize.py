"""Quantizes an FP32 ONNX classifier with ONNX Runtime's `quantize_static` (QDQ format, per
channel, MinMax), to test synthcal's import of QDQ models made elsewhere.

    ort-quantize.py FP32.onnx OUT.onnx (--cifar data_batch_1.bin [--count 5000] | --random N)
        [--activations int8|uint8] [--seed S]

Calibration images: the first COUNT images of a CIFAR-10 binary batch, or N random images
(uniform pixels), normalized with the model's metadata (`synthcal.norm_mean` / `norm_std`).
The model is first run through `quant_pre_process` (shape inference, BatchNorm folding).
Needs numpy, onnx and onnxruntime.
"""
import argparse
import json
import os
import tempfile

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

CIFAR_MEAN = [0.4914, 0.4822, 0.4465]
CIFAR_STD = [0.2023, 0.1994, 0.2010]


class Images(CalibrationDataReader):
    """Normalized float32 images, `batch` per call."""

    def __init__(self, name, x, batch=100):
        self.name, self.x, self.batch, self.i = name, x, batch, 0

    def get_next(self):
        if self.i >= len(self.x):
            return None
        b = self.x[self.i:self.i + self.batch]
        self.i += self.batch
        return {self.name: b}


def chunked_min_max():
    """MinMax calibration keeps every batch's intermediate tensors until the end (gigabytes
    for 5,000 images), and its `CalibMaxIntermediateOutputs` option drops batches instead of
    merging them in this onnxruntime (1.2x): collect 10 batches at a time, merging ranges."""
    from onnxruntime.quantization.calibrate import MinMaxCalibrater

    collect = MinMaxCalibrater.collect_data

    class Some(CalibrationDataReader):
        def __init__(self, items):
            self.items = iter(items)

        def get_next(self):
            return next(self.items, None)

    def chunks(self, reader):
        while True:
            part = [b for b in (reader.get_next() for _ in range(10)) if b]
            if not part:
                break
            collect(self, Some(part))

    MinMaxCalibrater.collect_data = chunks


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("output")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--cifar", help="a CIFAR-10 binary batch (data_batch_1.bin)")
    src.add_argument("--random", type=int, help="this many random calibration images")
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--activations", choices=["int8", "uint8"], default="int8",
                    help="activation type (ONNX Runtime's default: int8)")
    a = ap.parse_args()
    sess = ort.InferenceSession(a.model, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    meta = sess.get_modelmeta().custom_metadata_map
    mean = np.array(json.loads(meta.get("synthcal.norm_mean", json.dumps(CIFAR_MEAN))), np.float32)
    std = np.array(json.loads(meta.get("synthcal.norm_std", json.dumps(CIFAR_STD))), np.float32)
    if a.cifar:
        raw = np.fromfile(a.cifar, dtype=np.uint8).reshape(-1, 1 + 3072)[:a.count]
        px = raw[:, 1:].reshape(-1, 3, 32, 32)
    else:
        px = np.random.default_rng(a.seed).integers(0, 256, (a.random, 3, 32, 32), np.uint8)
    x = (px.astype(np.float32) / np.float32(255.0) - mean[None, :, None, None]) / std[None, :, None, None]
    chunked_min_max()
    with tempfile.TemporaryDirectory() as d:
        pre = os.path.join(d, "pre.onnx")
        quant_pre_process(a.model, pre, skip_symbolic_shape=True)
        act = QuantType.QUInt8 if a.activations == "uint8" else QuantType.QInt8
        quantize_static(pre, a.output, Images(inp.name, x), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=act, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        )
    # Keep the normalization and class names the FP32 file carries.
    import onnx
    src, out = onnx.load(a.model), onnx.load(a.output)
    have = {p.key for p in out.metadata_props}
    for p in src.metadata_props:
        if p.key not in have:
            out.metadata_props.append(p)
    onnx.save(out, a.output)
    print(f"{a.model} -> {a.output} ({len(x)} calibration images, {a.activations} activations)")


if __name__ == "__main__":
    main()
