// The Winograd kernels' uniforms (`winograd::Params`) and workgroup size, shared by the input
// and output transforms, the fused kernel and the weight gradient.

struct Params {
    n: u32, ci: u32, h: u32, w: u32,
    co: u32, oh: u32, ow: u32, cop: u32,
    pad_h: i32, pad_w: i32, tiles_h: u32, tiles_w: u32,
    tiles: u32, tiles_p: u32, _p2: u32, slope: f32,
    has_bias: u32, _p3: u32, _p0: u32, _p1: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
