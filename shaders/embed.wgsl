// Index lookups, one invocation per output element. Indices outside [0, rows) give zeros:
// a kernel cannot raise an error, and this never reads out of bounds.

struct Params {
    total: u32,
    rows: u32, // one_hot: K classes; embedding: V table rows
    d: u32,    // output row length (K or D)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> table: array<f32>;

fn index(gid: vec3u, nwg: vec3u) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

@compute @workgroup_size(256)
fn one_hot(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.total { return; }
    y[i] = select(0.0, 1.0, ids[i / p.d] == i32(i % p.d));
}

@compute @workgroup_size(256)
fn embedding(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.total { return; }
    let id = ids[i / p.d];
    var v = 0.0;
    if id >= 0 && u32(id) < p.rows {
        v = table[u32(id) * p.d + i % p.d];
    }
    y[i] = v;
}
