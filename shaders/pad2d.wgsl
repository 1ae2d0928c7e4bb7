// Spatial padding of [N*C, H, W] planes, one invocation per output element: a constant fill,
// the mirror image without repeating the edge (reflect), or the edge repeated (edge).

struct Params {
    total: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    top: u32,
    left: u32,
    // 0: constant, 1: reflect, 2: edge.
    mode: u32,
    value: f32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn pad2d(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.total { return; }
    let ox = i % p.ow;
    let oy = (i / p.ow) % p.oh;
    let plane = i / (p.ow * p.oh);
    let sy = pad_source(oy, p.top, p.h, p.mode);
    let sx = pad_source(ox, p.left, p.w, p.mode);
    if sy < 0 || sx < 0 {
        y[i] = p.value;
    } else {
        y[i] = x[(plane * p.h + u32(sy)) * p.w + u32(sx)];
    }
}
