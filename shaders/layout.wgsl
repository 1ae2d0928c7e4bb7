// Pure data movement, no arithmetic on values; the bindings and the channel copies are in
// layout_copy.wgsl.

fn index(gid: vec3u, nwg: vec3u) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// Nearest upsampling of [N*C, H, W] by f, one invocation per output row (no per-element
// division): total = N*C*H*f rows, a = H, b = W, c = f.
@compute @workgroup_size(256)
fn upsample(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let row = index(gid, nwg);
    if row >= p.total { return; }
    let src = (row / p.c) * p.b; // input row (nc * H + oy / f) starts here
    var o = row * p.b * p.c;
    for (var ix = 0u; ix < p.b; ix++) {
        let v = x[src + ix];
        for (var r = 0u; r < p.c; r++) {
            y[o] = v;
            o++;
        }
    }
}

// ResNet option-A shortcut, x[:, :, ::2, ::2] with `pad` zero channels either side, one
// invocation per output row (three integer divisions per row, not four per element: lavapipe
// has no vector integer division): total = N * (C + 2 pad) * out H rows, a = C, b = H, c = W,
// d = pad, e = out H, f = out W.
@compute @workgroup_size(256)
fn shortcut_a(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let row = index(gid, nwg);
    if row >= p.total { return; }
    let oy = row % p.e;
    let plane = row / p.e;
    let cp = p.a + 2u * p.d;
    let co = plane % cp;
    let n = plane / cp;
    let o = row * p.f;
    if co >= p.d && co < p.a + p.d {
        let src = ((n * p.a + co - p.d) * p.b + 2u * oy) * p.c;
        for (var ox = 0u; ox < p.f; ox++) { y[o + ox] = x[src + 2u * ox]; }
    } else {
        for (var ox = 0u; ox < p.f; ox++) { y[o + ox] = 0.0; }
    }
}
