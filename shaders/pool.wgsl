// Pooling over [N*C, H, W], one invocation per output (the host sizes the output: floor or
// ceil mode; windows are clipped to the input).

struct Params {
    total: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    k: u32,
    stride: u32,
    // Begin padding per axis, and the padded input's end (H + bottom, W + right).
    pad_h: u32,
    pad_w: u32,
    end_h: u32,
    end_w: u32,
    // Tap spacing per axis (max pooling only; 1: dense).
    dh: u32,
    dw: u32,
    _p0: u32,
    _p1: u32,
}

// Backward: 0 max, 1 average counting the padding, 2 average of the real elements. Fixed per
// pipeline rather than a uniform: lavapipe runs every case of a switch on a uniform value under
// a mask, so the average backwards would pay for the max's window scan at every element.
override MODE: u32 = 0u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn index(gid: vec3u, nwg: vec3u) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// Window of output i: (plane base, first row, first column), the start possibly in the padding.
fn window(i: u32) -> vec3i {
    let ox = i % p.ow;
    let oy = (i / p.ow) % p.oh;
    let nc = i / (p.ow * p.oh);
    return vec3i(i32(nc * p.h * p.w), i32(oy * p.stride) - i32(p.pad_h), i32(ox * p.stride) - i32(p.pad_w));
}

// count_include_pad=True: the divisor is the window clipped to the padded input, k*k except
// for a ceil-mode window hanging over the end (ONNX and PyTorch semantics).
@compute @workgroup_size(256)
fn avg_pool(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.total { return; }
    let win = window(i);
    var acc = 0.0;
    for (var ky = max(win.y, 0); ky < min(win.y + i32(p.k), i32(p.h)); ky++) {
        for (var kx = max(win.z, 0); kx < min(win.z + i32(p.k), i32(p.w)); kx++) {
            acc += x[u32(win.x + ky * i32(p.w) + kx)];
        }
    }
    let k = i32(p.k);
    let rows = min(win.y + k, i32(p.end_h)) - win.y;
    let cols = min(win.z + k, i32(p.end_w)) - win.z;
    y[i] = acc / f32(rows * cols);
}

// count_include_pad=False (ONNX's default): the mean of the window's real elements.
@compute @workgroup_size(256)
fn avg_pool_real(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.total { return; }
    let win = window(i);
    var acc = 0.0;
    var count = 0u;
    for (var ky = max(win.y, 0); ky < min(win.y + i32(p.k), i32(p.h)); ky++) {
        for (var kx = max(win.z, 0); kx < min(win.z + i32(p.k), i32(p.w)); kx++) {
            acc += x[u32(win.x + ky * i32(p.w) + kx)];
            count++;
        }
    }
    y[i] = acc / f32(max(count, 1u));
}

// Padding is -inf, so only real elements compete (padding < k leaves one in every dense
// window). Taps are dh, dw apart (dilation).
@compute @workgroup_size(256)
fn max_pool(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.total { return; }
    let win = window(i);
    var acc = bitcast<f32>(0xff800000u); // -inf
    for (var ty = 0; ty < i32(p.k); ty++) {
        let ky = win.y + ty * i32(p.dh);
        if ky < 0 || ky >= i32(p.h) { continue; }
        for (var tx = 0; tx < i32(p.k); tx++) {
            let kx = win.z + tx * i32(p.dw);
            if kx < 0 || kx >= i32(p.w) { continue; }
            acc = max(acc, x[u32(win.x + ky * i32(p.w) + kx)]);
        }
    }
    y[i] = acc;
}

// [N*C, H*W] -> [N*C]: total = N*C, h = H*W.
@compute @workgroup_size(256)
fn global_avg(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.total { return; }
    var acc = 0.0;
    for (var j = 0u; j < p.h; j++) {
        acc += x[i * p.h + j];
    }
    y[i] = acc / f32(p.h);
}

@group(0) @binding(2) var<storage, read> mp_dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> mp_dx: array<f32>;

// Index in x of the window's first maximum in scan order (PyTorch's choice on ties).
fn window_argmax(win: vec3i) -> i32 {
    var best = bitcast<f32>(0xff800000u); // -inf
    var at = -1;
    for (var ky = max(win.y, 0); ky < min(win.y + i32(p.k), i32(p.h)); ky++) {
        for (var kx = max(win.z, 0); kx < min(win.z + i32(p.k), i32(p.w)); kx++) {
            let j = win.x + ky * i32(p.w) + kx;
            if at < 0 || x[u32(j)] > best {
                best = x[u32(j)];
                at = j;
            }
        }
    }
    return at;
}

// First output index (along one axis, begin padding `pad`) whose window covers input i.
fn first_cover(i: i32, pad: u32) -> i32 {
    let a = i + i32(pad) - i32(p.k) + 1;
    return select(0, (a + i32(p.stride) - 1) / i32(p.stride), a > 0);
}

// The share of output o's gradient that input i receives: a max window's goes to its first
// maximum, an average's spreads over its real elements divided as `avg_pool` (MODE 1) or
// `avg_pool_real` (MODE 2) divide.
fn share(o: u32, i: u32) -> f32 {
    let win = window(o);
    let k = i32(p.k);
    switch MODE {
        case 1u: {
            return 1.0 / f32((min(win.y + k, i32(p.end_h)) - win.y) * (min(win.z + k, i32(p.end_w)) - win.z));
        }
        case 2u: {
            let rows = min(win.y + k, i32(p.h)) - max(win.y, 0);
            return 1.0 / f32(rows * (min(win.z + k, i32(p.w)) - max(win.z, 0)));
        }
        default: {
            return select(0.0, 1.0, window_argmax(win) == i32(i));
        }
    }
}

// Pool backward in gather form, one invocation per input element (total = N*C*H*W): it sums
// its share of dy over the windows that cover it. No atomics, so the result does not depend
// on thread order. Undilated windows.
@compute @workgroup_size(256)
fn pool_backward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.total { return; }
    let ix = i32(i % p.w);
    let iy = i32((i / p.w) % p.h);
    let nc = i / (p.w * p.h);
    let s = i32(p.stride);
    var acc = 0.0;
    for (var oy = first_cover(iy, p.pad_h); oy <= min(i32(p.oh) - 1, (iy + i32(p.pad_h)) / s); oy++) {
        for (var ox = first_cover(ix, p.pad_w); ox <= min(i32(p.ow) - 1, (ix + i32(p.pad_w)) / s); ox++) {
            let o = (nc * p.oh + u32(oy)) * p.ow + u32(ox);
            acc += mp_dy[o] * share(o, i);
        }
    }
    mp_dx[i] = acc;
}
