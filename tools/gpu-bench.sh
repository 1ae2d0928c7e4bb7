#!/usr/bin/env bash
# The real-GPU table of the README: `synthcal info`, `synthcal bench` (default conv rule, then
# SYNTHCAL_CONV=auto), ResNet-20's per-layer profile at batch 64 and 1,024 (FP32 and INT8), the
# 10,000-image evaluations with their logits (to compare with a CPU adapter's) and the library's
# kernel tests, each step time-limited, so one short lease gives the whole table.
# Usage: SYNTHCAL=path/to/synthcal [LIBTESTS=path/to/lib-test-binary] [INT8=q.safetensors]
#        tools/gpu-bench.sh OUTDIR
# Needs SYNTHCAL_SHARED with models/akamaster/resnet20-12fca82f.th and the CIFAR-10 test batch.
set -u
out="${1:?output folder}"
mkdir -p "$out"
log="$out/run.log"
s="${SYNTHCAL:?path to the synthcal binary}"
step() {
  local limit="$1"
  shift
  echo "== $* (limit ${limit} s)" | tee -a "$log"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  echo "== rc $rc, $((SECONDS - t0)) s" | tee -a "$log"
  return "$rc"
}
command -v nvidia-smi >/dev/null && step 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
if ! step 60 "$s" info; then
  echo "no usable adapter: stopping; the adapters synthcal sees without SYNTHCAL_ADAPTER:" | tee -a "$log"
  step 60 env -u SYNTHCAL_ADAPTER "$s" info
  exit 1
fi
step 150 "$s" bench
step 150 env SYNTHCAL_CONV=auto "$s" bench
if [ -n "${INT8:-}" ]; then
  step 90 "$s" bench --model akamaster_resnet20 --int8 "$INT8" --batch 64 --reps 10
  step 90 "$s" bench --model akamaster_resnet20 --int8 "$INT8" --batch 1024 --reps 10
  step 90 "$s" eval --data "$SYNTHCAL_SHARED/data/cifar-10-batches-bin" --model "$INT8" --predictions "$out/int8.csv"
fi
step 90 "$s" eval --data "$SYNTHCAL_SHARED/data/cifar-10-batches-bin" --model akamaster_resnet20 --predictions "$out/fp32.csv"
# Each 3x3 conv variant forced, then measured per shape (auto), on ResNet-20 FP32: what a
# default rule for this adapter should pick.
for v in direct winograd2 winograd4 fused4 auto; do
  for b in 64 1024; do
    step 90 env SYNTHCAL_CONV=$v RUST_LOG=synthcal::ops::conv_select=debug \
      "$s" bench --model akamaster_resnet20 --batch $b --reps 10
  done
done
if [ -n "${LIBTESTS:-}" ]; then
  step 120 "$LIBTESTS" --ignored --nocapture --test-threads 1 print_conv_variants
  # The unit tests (kernels against their CPU references) on this adapter; the few that need
  # shared files skip (they ran where those files are).
  echo "== library tests (limit 200 s)" | tee -a "$log"
  t0=$SECONDS
  SYNTHCAL_SHARED=/nonexistent timeout 200 "$LIBTESTS" --test-threads 16 >"$out/libtests.log" 2>&1
  echo "== rc $?, $((SECONDS - t0)) s" | tee -a "$log"
  grep -E "^test result|FAILED|panicked" "$out/libtests.log" | head -40 | tee -a "$log"
fi
