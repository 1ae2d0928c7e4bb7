// Per-row statistics for calibration: for each of `rows` rows of `len` contiguous values,
// (min, max, max |v|, sum). Rows are samples (per-tensor ranges) or (sample, channel) pairs
// (per-channel ranges). One invocation per row: no barriers, which lavapipe punishes.

struct Params {
    rows: u32,
    len: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn row_stats(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let r = gid.x + gid.y * nwg.x * 64u;
    if r >= p.rows { return; }
    let base = r * p.len;
    var lo = x[base];
    var hi = x[base];
    var sum = x[base];
    for (var i = 1u; i < p.len; i++) {
        let v = x[base + i];
        lo = min(lo, v);
        hi = max(hi, v);
        sum += v;
    }
    out[4u * r] = lo;
    out[4u * r + 1u] = hi;
    out[4u * r + 2u] = max(abs(lo), abs(hi));
    out[4u * r + 3u] = sum;
}
