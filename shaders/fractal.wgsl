// Fractal images from iterated function systems (the chaos game), one workgroup per image.
//
// Each image has a record of REC floats (see src/calib/fractal.rs, `Record`): up to 7 affine
// maps, their cumulative probabilities, the normalization to the canvas (flips folded in), a
// rotation, a background colour, one colour per map, a blur flag, a 3x3 patch mask and a seed.
// The kernel zeroes its histogram, runs 256 chains that splat points into a canvas of twice
// the image's height and width with integer atomics (so the result does not depend on their
// order), then composes the image: density (dilated by the patch mask) on a log scale over
// the background, in the points' colour, box-downsampled (4x4 window when blurred, 2x2
// otherwise).

struct Params {
    images: u32,
    stride: u32,  // floats per record
    iters: u32,   // points per chain after burn-in
    height: u32,  // of the image; the canvas is twice as high and wide
    width: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> rec: array<f32>;
@group(0) @binding(2) var<storage, read_write> hist: array<atomic<u32>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const BURN: u32 = 16u;
const O_PROB: u32 = 42u;
const O_NMAPS: u32 = 49u;
const O_NORM: u32 = 50u;
const O_ROT: u32 = 54u;
const O_BG: u32 = 56u;
const O_PAL: u32 = 59u;
const O_BLUR: u32 = 80u;
const O_MASK: u32 = 81u;
const O_SEED: u32 = 82u;

var<workgroup> wmax: array<u32, 256>;

fn pcg(v: u32) -> u32 {
    let s = v * 747796405u + 2891336453u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

fn count_at(hb: u32, x: i32, y: i32) -> vec4f {
    let cw = 2u * p.width;
    if x < 0 || y < 0 || x >= i32(cw) || y >= i32(2u * p.height) {
        return vec4f(0.0);
    }
    let i = hb + (u32(y) * cw + u32(x)) * 4u;
    return vec4f(
        f32(atomicLoad(&hist[i])),
        f32(atomicLoad(&hist[i + 1u])),
        f32(atomicLoad(&hist[i + 2u])),
        f32(atomicLoad(&hist[i + 3u])),
    );
}

// Count and colour sums of canvas pixel (x, y) dilated by the patch mask.
fn patch_at(hb: u32, r0: u32, x: i32, y: i32) -> vec4f {
    let mask = u32(rec[r0 + O_MASK]);
    var acc = vec4f(0.0);
    for (var k = 0u; k < 9u; k++) {
        if (mask & (1u << k)) != 0u {
            acc += count_at(hb, x + i32(k % 3u) - 1, y + i32(k / 3u) - 1);
        }
    }
    return acc;
}

@compute @workgroup_size(256)
fn render(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let img = wg.x;
    if img >= p.images { return; }
    let r0 = img * p.stride;
    let cw = 2u * p.width;
    let ch = 2u * p.height;
    let hb = img * cw * ch * 4u;
    for (var i = lid; i < cw * ch * 4u; i += 256u) {
        atomicStore(&hist[hb + i], 0u);
    }
    storageBarrier();
    workgroupBarrier();

    let n = u32(rec[r0 + O_NMAPS]);
    let norm = vec4f(rec[r0 + O_NORM], rec[r0 + O_NORM + 1u], rec[r0 + O_NORM + 2u], rec[r0 + O_NORM + 3u]);
    let cs = vec2f(rec[r0 + O_ROT], rec[r0 + O_ROT + 1u]);
    var st = pcg(bitcast<u32>(rec[r0 + O_SEED]) ^ pcg(lid + 1u));
    var pt = vec2f(0.0, 0.0);
    var col = vec3f(0.5, 0.5, 0.5);
    for (var it = 0u; it < p.iters + BURN; it++) {
        st = pcg(st);
        let u = f32(st >> 8u) * (1.0 / 16777216.0);
        var k = 0u;
        while k + 1u < n && u >= rec[r0 + O_PROB + k] { k++; }
        let m = r0 + k * 6u;
        pt = vec2f(rec[m] * pt.x + rec[m + 1u] * pt.y + rec[m + 4u],
                   rec[m + 2u] * pt.x + rec[m + 3u] * pt.y + rec[m + 5u]);
        let c = r0 + O_PAL + k * 3u;
        col = 0.5 * (col + vec3f(rec[c], rec[c + 1u], rec[c + 2u]));
        if it >= BURN {
            let q = pt * norm.xy + norm.zw;
            let r = vec2f(cs.x * q.x - cs.y * q.y, cs.y * q.x + cs.x * q.y);
            // False for NaN too.
            if abs(r.x) < 1.0 && abs(r.y) < 1.0 {
                let px = min(u32((r.x + 1.0) * 0.5 * f32(cw)), cw - 1u);
                let py = min(u32((r.y + 1.0) * 0.5 * f32(ch)), ch - 1u);
                let i = hb + (py * cw + px) * 4u;
                let c8 = vec3u(col * 255.0 + 0.5);
                atomicAdd(&hist[i], 1u);
                atomicAdd(&hist[i + 1u], c8.x);
                atomicAdd(&hist[i + 2u], c8.y);
                atomicAdd(&hist[i + 3u], c8.z);
            }
        }
    }
    storageBarrier();
    workgroupBarrier();

    // The densest (dilated) pixel sets the log scale.
    var mx = 0u;
    for (var i = lid; i < cw * ch; i += 256u) {
        mx = max(mx, u32(patch_at(hb, r0, i32(i % cw), i32(i / cw)).x));
    }
    wmax[lid] = mx;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if lid < s { wmax[lid] = max(wmax[lid], wmax[lid + s]); }
        workgroupBarrier();
    }
    let lmax = log(1.0 + f32(wmax[0]));
    let bg = vec3f(rec[r0 + O_BG], rec[r0 + O_BG + 1u], rec[r0 + O_BG + 2u]);
    let blur = rec[r0 + O_BLUR] > 0.5;
    let lo = select(0, -1, blur);
    let hi = select(2, 3, blur);
    let plane = p.height * p.width;
    for (var o = lid; o < plane; o += 256u) {
        let ox = i32(o % p.width) * 2;
        let oy = i32(o / p.width) * 2;
        var acc = vec3f(0.0);
        var cnt = 0.0;
        for (var dy = lo; dy < hi; dy++) {
            for (var dx = lo; dx < hi; dx++) {
                let h = patch_at(hb, r0, ox + dx, oy + dy);
                let a = select(0.0, log(1.0 + h.x) / lmax, lmax > 0.0);
                let c = h.yzw / (max(h.x, 1.0) * 255.0);
                acc += mix(bg, c, a);
                cnt += 1.0;
            }
        }
        let v = acc / cnt;
        let b = img * 3u * plane + o;
        out[b] = v.x;
        out[b + plane] = v.y;
        out[b + 2u * plane] = v.z;
    }
}
