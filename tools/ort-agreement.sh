#!/bin/bash
# ONNX Runtime against synthcal on every shared checkpoint, all 10,000 test images: the FP32
# export (same top-1, logits within 1e-4) and the INT8 model from real calibration exported
# as QDQ (same predictions on >= 99.9% of the images, top-1 within 0.05 pp, where ONNX
# Runtime's integer kernels do not overflow: see the README on x86 CPUs without VNNI).
#
#   tools/ort-agreement.sh OUT_DIR [MODEL ...]
#
# MODEL: paths under $SYNTHCAL_SHARED/models (default: all seven). Needs a built synthcal
# ($SYNTHCAL, default target/release/synthcal) and a Python with numpy and onnxruntime
# ($PYTHON, default python3). Each model's files and tools/ort-eval.py's reports go to
# OUT_DIR/NAME/; finished steps are skipped when run again.
set -euo pipefail
out=${1:?usage: tools/ort-agreement.sh OUT_DIR [MODEL ...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
bin=${SYNTHCAL:-$here/../target/release/synthcal}
py=${PYTHON:-python3}
shared=${SYNTHCAL_SHARED:-$here/../../shared}
data=$shared/data/cifar-10-batches-bin
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
  models=(akamaster/resnet20-12fca82f.th chenyaofo/cifar10_resnet20-4118986f.pt
    chenyaofo/cifar10_shufflenetv2_x0_5-1308b4e9.pt chenyaofo/cifar10_resnet56-187c023a.pt
    akamaster/resnet56-4bfd9763.th akamaster/resnet32-d509ac18.th akamaster/resnet44-014dd654.th)
fi
for m in "${models[@]}"; do
  name=$(basename "$m" | cut -d- -f1)
  d=$out/$name
  mkdir -p "$d"
  echo "== $name"
  [ -f "$d/fp32.onnx" ] || "$bin" export "$shared/models/$m" -o "$d/fp32.onnx"
  [ -f "$d/fp32.csv" ] || "$bin" eval --model "$shared/models/$m" --data "$data" \
    --predictions "$d/fp32.csv" --quiet > "$d/fp32.eval"
  "$py" "$here/ort-eval.py" "$d/fp32.onnx" --data "$data/test_batch.bin" \
    --predictions "$d/fp32.csv" | tee "$d/fp32.ort"
  [ -f "$d/q.safetensors" ] || "$bin" quantize --model "$shared/models/$m" --calib real \
    --per-class 100 --data "$data" -o "$d/q.safetensors" --quiet > "$d/q.log"
  [ -f "$d/q.onnx" ] || "$bin" export "$d/q.safetensors" -o "$d/q.onnx"
  [ -f "$d/q.csv" ] || "$bin" eval --model "$d/q.safetensors" --data "$data" \
    --predictions "$d/q.csv" --quiet > "$d/q.eval"
  "$py" "$here/ort-eval.py" "$d/q.onnx" --data "$data/test_batch.bin" \
    --predictions "$d/q.csv" | tee "$d/q.ort"
done
