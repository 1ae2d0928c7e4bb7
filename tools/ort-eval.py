"""Runs an ONNX classifier through ONNX Runtime on the CIFAR-10 test set and compares it
with a `synthcal eval --predictions F.csv` file of the same images.

    ort-eval.py MODEL.onnx --data test_batch.bin [--predictions F.csv] [--limit N]
        [--ort-predictions OUT.csv] [--as-written]

Images are normalized with the model's metadata (`synthcal.norm_mean` / `synthcal.norm_std`,
else the CIFAR statistics). Prints ONNX Runtime's top-1 and, with --predictions, synthcal's
top-1, the agreement of the two predictions and the largest |logit difference|.
Needs only numpy and onnxruntime.
"""
import argparse
import csv
import json
import sys

import numpy as np
import onnxruntime as ort

CIFAR_MEAN = [0.4914, 0.4822, 0.4465]
CIFAR_STD = [0.2023, 0.1994, 0.2010]


def read_cifar(path, limit=None):
    """Images as uint8 [N, 3, 32, 32] and labels, from a CIFAR-10 binary batch."""
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, 1 + 3 * 32 * 32)
    if limit:
        raw = raw[:limit]
    return raw[:, 1:].reshape(-1, 3, 32, 32), raw[:, 0].astype(np.int64)


def session_norm(sess):
    meta = sess.get_modelmeta().custom_metadata_map
    mean = json.loads(meta.get("synthcal.norm_mean", json.dumps(CIFAR_MEAN)))
    std = json.loads(meta.get("synthcal.norm_std", json.dumps(CIFAR_STD)))
    return np.array(mean, np.float32), np.array(std, np.float32)


def normalize(images, mean, std):
    """As synthcal does it: (p / 255 - mean) / std in float32."""
    x = images.astype(np.float32) / np.float32(255.0)
    return (x - mean[None, :, None, None]) / std[None, :, None, None]


def run(sess, x, batch=500):
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)])


def read_predictions(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    head = rows[0]
    k = [i for i, h in enumerate(head) if h.startswith("logit_")]
    pred = np.array([int(r[3]) for r in rows[1:]])
    logits = np.array([[float(r[i]) for i in k] for r in rows[1:]], np.float32)
    return pred, logits


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--data", required=True, help="CIFAR-10 test_batch.bin")
    ap.add_argument("--predictions", help="synthcal eval --predictions CSV of the same images")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--ort-predictions", help="write ONNX Runtime's predicted classes here (one per line)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--as-written", action="store_true",
                    help="graph optimizations off: QDQ pairs computed in float as the file states "
                         "them, not fused into ONNX Runtime's integer kernels (which may saturate "
                         "8-bit weights on x86 CPUs without VNNI)")
    a = ap.parse_args()
    so = ort.SessionOptions()
    if a.threads:
        so.intra_op_num_threads = a.threads
    if a.as_written:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    images, labels = read_cifar(a.data, a.limit)
    mean, std = session_norm(sess)
    logits = run(sess, normalize(images, mean, std))
    pred = logits.argmax(1)
    n = len(labels)
    print(f"images: {n}")
    print(f"ONNX Runtime top-1: {100 * (pred == labels).mean():.2f}%")
    if a.ort_predictions:
        np.savetxt(a.ort_predictions, pred, fmt="%d")
    if a.predictions:
        sp, sl = read_predictions(a.predictions)
        if len(sp) != n:
            sys.exit(f"{a.predictions} has {len(sp)} rows for {n} images")
        agree = (sp == pred).mean()
        print(f"synthcal top-1:     {100 * (sp == labels).mean():.2f}%")
        print(f"agreement:          {100 * agree:.2f}% ({int((sp != pred).sum())} differ)")
        print(f"max |logit diff|:   {np.abs(sl - logits).max():.3e}")


if __name__ == "__main__":
    main()
