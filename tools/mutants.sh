#!/usr/bin/env bash
# Plants the bugs of issue 19 one at a time in a scratch copy of this working tree, builds,
# runs the tests meant to catch each, and prints mutation -> caught? -> failing tests.
# Not run by CI. Usage: tools/mutants.sh [name...]   (default: all; see `mutants` below)
# MUTANTS_DIR (default /tmp/synthcal-mutants) holds the copy and its own target folder, so
# later runs rebuild only the crate. MUTANTS_SLOW=1 adds the shared-data accuracy tests.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${MUTANTS_DIR:-/tmp/synthcal-mutants}
tree=$work/tree
export CARGO_TARGET_DIR=$work/target
export WGPU_BACKEND=${WGPU_BACKEND:-vulkan}
export SYNTHCAL_SHARED=${SYNTHCAL_SHARED:-$(cd "$root/.." && pwd)/shared}
export CARGO_TERM_COLOR=never
unset CI # a skip must stay a skip here, not a failure that looks like a catch
mkdir -p "$work"

# rep FILE OLD NEW: replace every literal OLD in FILE by NEW; fails when OLD is absent.
rep() {
  python3 - "$tree/$1" "$2" "$3" <<'PY'
import sys
p, old, new = sys.argv[1:]
s = open(p).read()
if old not in s:
    sys.exit(f"mutation not applicable: {old!r} not in {p}")
open(p, "w").write(s.replace(old, new))
PY
}

# name | what | test sets (';'-separated `cargo test` arguments)
mutants=(
  "dw-scales|depthwise per-channel input scales ignored in QConv::requant()|--lib ops::qconv"
  "round-shader|requantization rounds half away from zero in the shader|--lib ops::qconv"
  "round-cpu|requantization rounds half away from zero in the CPU reference|--lib ops::qconv;--lib cpu::qconv"
  "wgrad|conv weight gradient scaled by 1.01|--test grad;--lib graph::replay"
  "torch-khkw|kernel height and width swapped when reading 4-D torch tensors|--test torch_import"
  "bn-eps|BatchNorm eps 1e-3 instead of the model's 1e-5|--test zoo_forward"
  "flips|fidelity's two flip counts swapped|--lib eval::fidelity"
)
if [ "${MUTANTS_SLOW:-0}" = 1 ]; then
  mutants[0]+=";--test shared_models shufflenet"
  mutants[5]+=";--test shared_models every_shared"
fi

plant() {
  case $1 in
  dw-scales) rep src/quant/int8.rs "self.input_format(c).scale as f64" "self.input.scale as f64" ;;
  round-shader) rep shaders/qconv.wgsl "let q = vec4<i32>(clamp(round(v)," \
    "let q = vec4<i32>(clamp(sign(v) * floor(abs(v) + 0.5)," ;;
  round-cpu) rep src/cpu/qconv.rs "let v = (a as f32 * rq.scale[chan(i)]).round_ties_even();" \
    "let v = (a as f32 * rq.scale[chan(i)]).round();" ;;
  wgrad) rep shaders/conv2d_grad.wgsl "] = lo[j][k];" "] = 1.01 * lo[j][k];" &&
    rep shaders/conv2d_grad.wgsl "] = hi[j][k];" "] = 1.01 * hi[j][k];" ;;
  torch-khkw) rep src/io/torch.rs "let mut off = t.offset;" \
    "let mut off = t.offset; let (mut sh, mut st) = (t.shape.clone(), t.stride.clone()); if sh.len() == 4 { sh.swap(2, 3); st.swap(2, 3); }" &&
    rep src/io/torch.rs "off = off.wrapping_add(t.stride[d]);" "off = off.wrapping_add(st[d]);" &&
    rep src/io/torch.rs "if idx[d] < t.shape[d] {" "if idx[d] < sh[d] {" &&
    rep src/io/torch.rs "off.wrapping_sub(t.stride[d].wrapping_mul(t.shape[d]))" "off.wrapping_sub(st[d].wrapping_mul(sh[d]))" ;;
  bn-eps) rep src/models/builder.rs "eps: 1e-5," "eps: 1e-3," ;;
  flips) rep src/eval/fidelity.rs "fp32_right_int8_wrong: b_only_wrong," "fp32_right_int8_wrong: a_only_wrong," &&
    rep src/eval/fidelity.rs "fp32_wrong_int8_right: a_only_wrong," "fp32_wrong_int8_right: b_only_wrong," ;;
  *) echo "unknown mutation $1" >&2; return 1 ;;
  esac
}

# A fresh copy of the working tree (tracked and untracked, not ignored files).
fresh() {
  rm -rf "$tree" && mkdir -p "$tree"
  (cd "$root" && git ls-files -co --exclude-standard -z | xargs -0 tar -cf - 2>/dev/null) |
    tar -xf - -C "$tree"
}

want=("$@")
rows=()
for m in "${mutants[@]}"; do
  IFS='|' read -r name what sets <<<"$m"
  if [ ${#want[@]} -gt 0 ] && [[ ! " ${want[*]} " == *" $name "* ]]; then continue; fi
  fresh
  if ! plant "$name"; then
    rows+=("$name|NOT PLANTED|-"); continue
  fi
  caught=no failed=""
  IFS=';' read -ra tests <<<"$sets"
  for t in "${tests[@]}"; do
    log=$work/$name.$(echo "$t" | tr ' /:' '___').log
    echo ">> $name: cargo test $t" >&2
    # shellcheck disable=SC2086
    (cd "$tree" && cargo test -q $t) >"$log" 2>&1
    rc=$?
    names=$(grep -E '^---- .* stdout ----$' "$log" | sed -E 's/^---- (.*) stdout ----$/\1/' | tr '\n' ' ')
    if [ $rc -ne 0 ]; then
      caught=yes
      [ -n "$names" ] || names="(build or run error, see $log)"
      failed+="[$t] $names "
    fi
  done
  rows+=("$name|$caught|${failed:--}")
  echo ">> $name: caught=$caught" >&2
done

printf '\n%-13s | %-6s | %s\n' mutation caught "failing tests"
printf '%s\n' "--------------|--------|--------------"
for r in "${rows[@]}"; do
  IFS='|' read -r a b c <<<"$r"
  printf '%-13s | %-6s | %s\n' "$a" "$b" "$c"
done
