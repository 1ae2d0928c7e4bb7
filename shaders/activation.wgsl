// Activation codes of ops::elementwise::Act (`Act::code`), shared by every shader that fuses an
// activation (prepended by the `shader!` macro).

fn act_scalar(v: f32, kind: u32, slope: f32) -> f32 {
    switch kind {
        case 1u: { return max(v, 0.0); }
        case 2u: { return clamp(v, 0.0, 6.0); }
        case 3u: { return select(v * slope, v, v >= 0.0); }
        case 4u: {
            // tanh via exp(-2|v|): never inf/inf, exact sign.
            let e = exp(-2.0 * abs(v));
            return sign(v) * (1.0 - e) / (1.0 + e);
        }
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
        case 4u: {
            let e = exp(-2.0 * abs(v));
            return sign(v) * (1.0 - e) / (1.0 + e);
        }
        case 5u: {
            let e = exp(-abs(v));
            return select(e / (1.0 + e), 1.0 / (1.0 + e), v >= vec4f(0.0));
        }
        case 6u: { return v * clamp(v / 6.0 + 0.5, vec4f(0.0), vec4f(1.0)); }
        default: { return v; }
    }
}
