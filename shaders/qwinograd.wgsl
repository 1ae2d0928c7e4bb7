// INT8 conv 3x3, stride 1, by Winograd F(4x4, 3x3) in wrapping i32 arithmetic: the same sums
// as the direct kernel (qconv.wgsl), bit for bit, with 36 multiplies per 4x4 output tile and
// input channel instead of 144. Inputs are the packed i8 activations (src/ops/qconv.rs).
//
// Why it is exact: with G = D G' (D = diag(1/4, -1/6, -1/6, 1/24, 1/24, 1), G' integer), the
// weights U' = G' g G'^T are integers, V = B^T d B is integer for integer d, and
// 576 Y = (24 A^T D) (sum over channels of U' . V) (24 D A) with 24 A^T D integer. So 576 Y is
// computed modulo 2^32 by wrapping i32 ops; 576 = 64 x 9, so Z >> 6 is 9 Y modulo 2^26, and
// times the inverse of 9 modulo 2^32, sign-extended from bit 25, it is Y wherever
// |Y| < 2^25 (the host checks this bound per output channel: 128 x sum |w|).
//
// Row loads come from winograd_row6.wgsl, or winograd_row6_aligned.wgsl where the input width
// is a multiple of 4 and the left padding 1 (one vec4 load for four words of a patch row); the
// epilogue's stores from qwinograd_store.wgsl, or qwinograd_store_vec4.wgsl with those aligned
// rows (one vec4 store per tile row).
//
// The structure follows winograd_fused.wgsl (one 4x4 tile and COB output channels per
// invocation, U from the same weight preludes with S = i32, or from winograd_u_raw.wgsl, which
// transforms the int8 kernels in the kernel): per input word it loads the 6x6 patch once (four
// channels per u32), transforms each of its four channels and accumulates the four together.

struct Params {
    n: u32, c4: u32, h: u32, w: u32,
    co: u32, co4: u32, oh: u32, ow: u32,
    pad_h: i32, pad_w: i32, tiles_h: u32, tiles_w: u32,
    tiles: u32, pad_word: u32, lo: i32, hi: i32,
    out_offset: i32, slope: f32, _p0: u32, _p1: u32,
    // A fused residual add (HAS_RES): the conv's int8 output is a, the residual b.
    add: AddK,
}

override WG: u32 = 64u;
// Output channels per invocation: 8 or 16 (U's channel axis is padded to a multiple of 8).
override COB: u32 = 8u;
// Input channels per word that hold data: 4, or fewer where the input is one word.
override LANES: u32 = 4u;
// The epilogue, fixed per pipeline rather than read from the uniforms: lavapipe runs both sides
// of a branch on a uniform value under a mask, so a uniform choice would pay for every
// activation and both output forms at every output. MODE 0: f32 outputs with activation ACT
// (declared in activation.wgsl); 1: int8 outputs, plus the residual add where HAS_RES.
override MODE: u32 = 0u;
override HAS_RES: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<i32>;
@group(0) @binding(4) var<storage, read> scale: array<f32>;

// The tile math (R6, Rows6, bt_rows, P9, mac, mac8) comes from winograd_rows.wgsl and
// winograd_tile.wgsl, the row loads from winograd_row6.wgsl or winograd_row6_aligned.wgsl, in
// words of four channels (X = u32, the stored zero point outside the image).
alias S = i32;
alias X = u32;
alias XR6 = W6;
fn fill() -> u32 { return p.pad_word; }
// Six packed input words of a patch row.
struct W6 { lo: vec4u, hi: vec2u }

// Byte k (signed) of each word of a row.
fn lane(r: W6, k: u32) -> R6 {
    let s = 24u - 8u * k;
    return R6(bitcast<vec4i>(r.lo << vec4u(s)) >> vec4u(24u),
              bitcast<vec2i>(r.hi << vec2u(s)) >> vec2u(24u));
}

// V = B^T d B of channel k of the patch rows q0..q5.
fn transform_input(q0: W6, q1: W6, q2: W6, q3: W6, q4: W6, q5: W6, k: u32) -> P9 {
    return pack_rows(bt_rows(lane(q0, k), lane(q1, k), lane(q2, k), lane(q3, k), lane(q4, k),
                        lane(q5, k)));
}

// 24 A^T D along one row.
fn at6(r: R6) -> vec4i {
    let m0 = r.lo.x; let m1 = r.lo.y; let m2 = r.lo.z; let m3 = r.lo.w;
    let m4 = r.hi.x; let m5 = r.hi.y;
    return vec4i(6 * m0 - 4 * (m1 + m2) + m3 + m4,
                 4 * (m2 - m1) + 2 * (m3 - m4),
                 4 * (m3 + m4 - m1 - m2),
                 4 * (m2 - m1) + 8 * (m3 - m4) + 24 * m5);
}

// Y from 576 Y modulo 2^32 (see the top).
fn exact(z: vec4i) -> vec4i {
    let y = (z >> vec4u(6u)) * 954437177; // 9 * 954437177 = 1 modulo 2^32
    return (y << vec4u(6u)) >> vec4u(6u);
}

// The tile's 16 sums of one channel, row by row.
struct Y4 { r0: vec4i, r1: vec4i, r2: vec4i, r3: vec4i }

fn output_transform(m: P9) -> Y4 {
    let r = unpack_rows(m);
    let m0 = r.r0; let m1 = r.r1; let m2 = r.r2; let m3 = r.r3; let m4 = r.r4; let m5 = r.r5;
    let s12 = add(m1, m2);
    let d21 = sub(m2, m1);
    let s34 = add(m3, m4);
    let d34 = sub(m3, m4);
    return Y4(exact(at6(add(lin(m0, 6, s12, -4), s34))),
              exact(at6(lin(d21, 4, d34, 2))),
              exact(at6(lin(s34, 4, s12, -4))),
              exact(at6(add(lin(d21, 4, d34, 8), R6(24 * m5.lo, 24 * m5.hi)))));
}

// The epilogue constants of channels c..c+3.
struct Epi { bias: vec4i, scale: vec4f }

// The f32 outputs (mode 0) of channels c..c+3 with sums `acc`: qconv.wgsl's epilogue.
fn real(e: Epi, acc: vec4i) -> vec4f {
    let v = vec4f(acc + e.bias) * e.scale;
    return act_vec4(v, ACT, p.slope);
}

// The int8 outputs (mode 1) of channels c..c+3, packed as stored.
fn packed(c: u32, e: Epi, acc: vec4i) -> u32 {
    return requant_word(vec4f(acc + e.bias) * e.scale, c, p.co, p.lo, p.hi, p.out_offset);
}

// Output channels c..c+3 of the tile at (n, oy, ox).
fn finish4(m0: P9, m1: P9, m2: P9, m3: P9, c: u32, n: u32, oy: u32, ox: u32) {
    if c >= p.co { return; }
    // bias and scale are padded to a multiple of 8 channels.
    let e = Epi(vec4i(bias[c], bias[c + 1u], bias[c + 2u], bias[c + 3u]),
                vec4f(scale[c], scale[c + 1u], scale[c + 2u], scale[c + 3u]));
    let y0 = output_transform(m0);
    let y1 = output_transform(m1);
    let y2 = output_transform(m2);
    let y3 = output_transform(m3);
    store_row(n, oy, ox, c, e, y0.r0, y1.r0, y2.r0, y3.r0);
    store_row(n, oy + 1u, ox, c, e, y0.r1, y1.r1, y2.r1, y3.r1);
    store_row(n, oy + 2u, ox, c, e, y0.r2, y1.r2, y2.r2, y3.r2);
    store_row(n, oy + 3u, ox, c, e, y0.r3, y1.r3, y2.r3, y3.r3);
}

fn finish8(a: Acc8, c: u32, n: u32, oy: u32, ox: u32) {
    finish4(a.c0, a.c1, a.c2, a.c3, c, n, oy, ox);
    finish4(a.c4, a.c5, a.c6, a.c7, c + 4u, n, oy, ox);
}

// Both blocks (COB 16) or the first, for input channel k of the patch.
fn mac_channel(a0: ptr<function, Acc8>, a1: ptr<function, Acc8>, j: u32, li: u32, v: P9) {
    mac8(a0, 0u, j, li, v);
    if COB > 8u { mac8(a1, 8u, j + 72u, li, v); }
}

@compute @workgroup_size(WG)
fn qfused4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u,
           @builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
    // As in winograd_fused.wgsl: whole groups of 8 past the end return, other lanes past it
    // recompute the last tile for the broadcasts and store nothing.
    let t0 = gid.x + gid.y * nwg.x * WG;
    if t0 - li % 8u >= p.tiles { return; }
    let tl = tile_at(t0);
    let n = tl.n; let oy = tl.oy; let ox = tl.ox; let ih = tl.ih; let iw = tl.iw;
    let co0 = wid.z * COB;
    let hw = i32(p.h * p.w);
    var rb = i32(n * p.c4) * hw;
    let cop8 = (p.co + 7u) / 8u * 8u;
    // U is [C4 * 4][Co / 8][9][8] vec4s, as the fused FP32 kernel's.
    var j = co0 / 8u * 72u;
    let step = cop8 * 9u;
    let l8 = li % 8u;
    var a0: Acc8;
    var a1: Acc8;
    for (var w = 0u; w < p.c4; w++) {
        let q0 = row6(rb, ih, iw);
        let q1 = row6(rb, ih + 1, iw);
        let q2 = row6(rb, ih + 2, iw);
        let q3 = row6(rb, ih + 3, iw);
        let q4 = row6(rb, ih + 4, iw);
        let q5 = row6(rb, ih + 5, iw);
        let v0 = transform_input(q0, q1, q2, q3, q4, q5, 0u);
        if LANES == 4u {
            // All four channels in one accumulation (mac8x4: one read and write of each
            // accumulator instead of four).
            let v1 = transform_input(q0, q1, q2, q3, q4, q5, 1u);
            let v2 = transform_input(q0, q1, q2, q3, q4, q5, 2u);
            let v3 = transform_input(q0, q1, q2, q3, q4, q5, 3u);
            mac8x4(&a0, 0u, j, step, l8, v0, v1, v2, v3);
            if COB > 8u { mac8x4(&a1, 8u, j + 72u, step, l8, v0, v1, v2, v3); }
        } else {
            // A single-word input with fewer channels (an RGB stem's) skips the padding lanes.
            mac_channel(&a0, &a1, j, l8, v0);
            if LANES > 1u {
                mac_channel(&a0, &a1, j + step, l8, transform_input(q0, q1, q2, q3, q4, q5, 1u));
            }
            if LANES > 2u {
                let v2 = transform_input(q0, q1, q2, q3, q4, q5, 2u);
                mac_channel(&a0, &a1, j + 2u * step, l8, v2);
            }
        }
        rb += hw;
        j += 4u * step;
    }
    if !tl.live { return; }
    finish8(a0, co0, n, oy, ox);
    if COB > 8u { finish8(a1, co0 + 8u, n, oy, ox); }
}
