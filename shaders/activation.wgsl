// Activation codes of ops::elementwise::Act (`Act::code`), shared by every shader that fuses an
// activation (prepended by the `shader!` macro).

// The fused activation of the kernels that have one (`elementwise::act_const`), fixed per
// pipeline rather than read from a uniform: lavapipe runs every case of a switch on a uniform
// value under a mask, so a uniform code would cost every activation at every output.
override ACT: u32 = 0u;

// tanh. Below |v| = 0.625 the odd polynomial of Cephes' tanhf (S. L. Moshier; relative error
// under 1e-7 in f32), where 1 - exp(-2|v|) would cancel (up to 40% off near 0); above, via
// exp(-2|v|): never inf/inf, exact sign.
fn tanh4(v: vec4f) -> vec4f {
    let z = v * v;
    let p = ((((-5.70498872745e-3 * z + 2.06390887954e-2) * z - 5.37397155531e-2) * z
        + 1.33314422036e-1) * z - 3.33332819422e-1) * z * v + v;
    let e = exp(-2.0 * abs(v));
    return select(sign(v) * (1.0 - e) / (1.0 + e), p, abs(v) < vec4f(0.625));
}

fn act_scalar(v: f32, kind: u32, slope: f32) -> f32 {
    switch kind {
        case 1u: { return max(v, 0.0); }
        case 2u: { return clamp(v, 0.0, 6.0); }
        case 3u: { return select(v * slope, v, v >= 0.0); }
        case 4u: { return tanh4(vec4f(v)).x; }
        case 5u: {
            let e = exp(-abs(v));
            return select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0);
        }
        case 6u: { return v * clamp(v / 6.0 + 0.5, 0.0, 1.0); }
        default: { return v; }
    }
}

fn act_vec4(v: vec4f, kind: u32, slope: f32) -> vec4f {
    switch kind {
        case 1u: { return max(v, vec4f(0.0)); }
        case 2u: { return clamp(v, vec4f(0.0), vec4f(6.0)); }
        case 3u: { return select(v * slope, v, v >= vec4f(0.0)); }
        case 4u: { return tanh4(v); }
        case 5u: {
            let e = exp(-abs(v));
            return select(e / (1.0 + e), 1.0 / (1.0 + e), v >= vec4f(0.0));
        }
        case 6u: { return v * clamp(v / 6.0 + 0.5, vec4f(0.0), vec4f(1.0)); }
        default: { return v; }
    }
}
