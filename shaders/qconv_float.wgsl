// `conv` with exact float accumulation, for adapters that emulate the packed dot (CPU ones,
// where an f32 FMA costs half a pmaddwd + add). Stored inputs and weights are integers of
// magnitude <= 128, so each product is an integer below 2^14 and exact in f32; the host runs
// this entry only where K (taps x input channels per group) x 128 x max|w| <= 2^24, so every
// partial sum, in any order, is an integer of magnitude <= 2^24, which f32 holds exactly. The
// i32 sums then equal the integer kernel's bit for bit.
// Weights are f32, per tile and step 8 vec4s: vec4 4h + k holds input lane k of output
// channels 8t + 4h + 0..3, so each input lane is one vec4 FMA per 4 output channels.

// Pixels per thread (1..8) and output words per thread: 1 (half a tile each; the grid's z is
// 2 x tiles) or 2. lavapipe keeps each lane's scalar in one SIMD register, so few
// accumulators avoid spills.
override PXF: u32 = 4u;
override CWF: u32 = 1u;

fn fstep(acc: vec4f, x: vec4f, w: WF4) -> vec4f {
    var a = fma(vec4f(x.x), w.k0, acc);
    a = fma(vec4f(x.y), w.k1, a);
    a = fma(vec4f(x.z), w.k2, a);
    return fma(vec4f(x.w), w.k3, a);
}

@compute @workgroup_size(WG)
fn conv_float(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
              @builtin(local_invocation_index) lid: u32) {
    let t = select(wid.z, wid.z / 2u, CWF == 1u);
    let h = select(0u, wid.z % 2u, CWF == 1u);
    let first = (wid.x + wid.y * nwg.x) * (WG * PXF) + lid;
    let start = window_start(t);
    let lane = lid % 8u;
    let p0 = pixel(first, start); let p1 = pixel(first + WG, start);
    let p2 = pixel(first + 2u * WG, start); let p3 = pixel(first + 3u * WG, start);
    let p4 = pixel(first + 4u * WG, start); let p5 = pixel(first + 5u * WG, start);
    let p6 = pixel(first + 6u * WG, start); let p7 = pixel(first + 7u * WG, start);
    let hw = p.h * p.w;
    let z = vec4f(0.0);
    var a0 = z; var a1 = z; var a2 = z; var a3 = z; var a4 = z; var a5 = z; var a6 = z; var a7 = z;
    var b0 = z; var b1 = z; var b2 = z; var b3 = z; var b4 = z; var b5 = z; var b6 = z; var b7 = z;
    var wi = t * p.kh * p.kw * p.win * 8u + 4u * h;
    for (var ky = 0u; ky < p.kh; ky++) {
        for (var kx = 0u; kx < p.kw; kx++) {
            var o0 = tap(p0, ky, kx); var o1 = tap(p1, ky, kx);
            var o2 = tap(p2, ky, kx); var o3 = tap(p3, ky, kx);
            var o4 = tap(p4, ky, kx); var o5 = tap(p5, ky, kx);
            var o6 = tap(p6, ky, kx); var o7 = tap(p7, ky, kx);
            for (var j = 0u; j < p.win; j++) {
                let wa = weights4f(wi, lane);
                var wb = wa;
                if CWF > 1u { wb = weights4f(wi + 4u, lane); }
                wi += 8u;
                var x = vec4f(unpack(load(o0)));
                a0 = fstep(a0, x, wa);
                if CWF > 1u { b0 = fstep(b0, x, wb); }
                if PXF > 1u {
                    x = vec4f(unpack(load(o1)));
                    a1 = fstep(a1, x, wa);
                    if CWF > 1u { b1 = fstep(b1, x, wb); }
                }
                if PXF > 2u {
                    x = vec4f(unpack(load(o2)));
                    a2 = fstep(a2, x, wa);
                    if CWF > 1u { b2 = fstep(b2, x, wb); }
                }
                if PXF > 3u {
                    x = vec4f(unpack(load(o3)));
                    a3 = fstep(a3, x, wa);
                    if CWF > 1u { b3 = fstep(b3, x, wb); }
                }
                if PXF > 4u {
                    x = vec4f(unpack(load(o4)));
                    a4 = fstep(a4, x, wa);
                    if CWF > 1u { b4 = fstep(b4, x, wb); }
                }
                if PXF > 5u {
                    x = vec4f(unpack(load(o5)));
                    a5 = fstep(a5, x, wa);
                    if CWF > 1u { b5 = fstep(b5, x, wb); }
                }
                if PXF > 6u {
                    x = vec4f(unpack(load(o6)));
                    a6 = fstep(a6, x, wa);
                    if CWF > 1u { b6 = fstep(b6, x, wb); }
                }
                if PXF > 7u {
                    x = vec4f(unpack(load(o7)));
                    a7 = fstep(a7, x, wa);
                    if CWF > 1u { b7 = fstep(b7, x, wb); }
                }
                o0 += hw; o1 += hw; o2 += hw; o3 += hw; o4 += hw; o5 += hw; o6 += hw; o7 += hw;
            }
        }
    }
    let ca = 2u * t + h;
    store(p0, ca, vec4<i32>(a0));
    if CWF > 1u { store(p0, ca + 1u, vec4<i32>(b0)); }
    if PXF > 1u { store(p1, ca, vec4<i32>(a1)); if CWF > 1u { store(p1, ca + 1u, vec4<i32>(b1)); } }
    if PXF > 2u { store(p2, ca, vec4<i32>(a2)); if CWF > 1u { store(p2, ca + 1u, vec4<i32>(b2)); } }
    if PXF > 3u { store(p3, ca, vec4<i32>(a3)); if CWF > 1u { store(p3, ca + 1u, vec4<i32>(b3)); } }
    if PXF > 4u { store(p4, ca, vec4<i32>(a4)); if CWF > 1u { store(p4, ca + 1u, vec4<i32>(b4)); } }
    if PXF > 5u { store(p5, ca, vec4<i32>(a5)); if CWF > 1u { store(p5, ca + 1u, vec4<i32>(b5)); } }
    if PXF > 6u { store(p6, ca, vec4<i32>(a6)); if CWF > 1u { store(p6, ca + 1u, vec4<i32>(b6)); } }
    if PXF > 7u { store(p7, ca, vec4<i32>(a7)); if CWF > 1u { store(p7, ca + 1u, vec4<i32>(b7)); } }
}
