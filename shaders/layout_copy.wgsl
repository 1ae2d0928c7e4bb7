// Channel copies (concat, split, slice) and the channel shuffle on [N, C, S] tensors, over
// elements of type E: f32 (layout_f32.wgsl) or vec4f where S is a multiple of 4
// (layout_vec4.wgsl; every offset and extent then counts vec4s). The scalar module also holds
// layout.wgsl's other entries, which share these bindings.

struct Params {
    total: u32,
    a: u32,
    b: u32,
    c: u32,
    d: u32,
    e: u32,
    f: u32,
    g: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<E>;
@group(0) @binding(2) var<storage, read_write> y: array<E>;

// copy_channels and shuffle run x over the elements of one image's block (looping past 65535
// workgroups), y over output channels (shuffle) and z over images from f on, so no element
// index is divided (lavapipe has no vector integer division). lavapipe pays per lane for each
// storage access, hence the vec4 module.

// A block of channels between [N, C, S] tensors (concat, split, slice): a = block C*S,
// b = source C*S, c = source offset, d = dest C*S, e = dest offset (offsets * S).
@compute @workgroup_size(256)
fn copy_channels(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let n = p.f + gid.z;
    for (var r = gid.x; r < p.a; r += nwg.x * 256u) {
        y[n * p.d + p.e + r] = x[n * p.b + p.c + r];
    }
}

// [N, g, c, S] -> [N, c, g, S]: a = g, b = c, c = S. The source channel is uniform across a
// workgroup.
@compute @workgroup_size(64)
fn shuffle(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let oc = gid.y;
    let ct = p.a * p.b;
    let n = p.f + gid.z;
    let src = (n * ct + (oc % p.a) * p.b + oc / p.a) * p.c;
    let dst = (n * ct + oc) * p.c;
    for (var s = gid.x; s < p.c; s += nwg.x * 64u) {
        y[dst + s] = x[src + s];
    }
}
