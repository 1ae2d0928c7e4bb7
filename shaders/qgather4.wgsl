// A word-moving int8 gather (`QGather::word_map`, see qlayout.wgsl's `gather_words`) four
// output words at a time: output rows whose width is a multiple of 4, input rows likewise, at
// stride 1 or 2. Each invocation loads one or two aligned vec4s and stores one: lavapipe pays
// per lane for every storage access, about as much for a vec4 as for a word.

struct QuadParams {
    n: u32, co4: u32, oh: u32, ow: u32,
    h: u32, w: u32, c4: u32, stride: u32,
    pad_word: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: QuadParams;
@group(0) @binding(1) var<storage, read> x: array<vec4u>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4u>;
// Per output channel word, the input word it copies, or -1 for real zero (pad_word).
@group(0) @binding(3) var<storage, read> map: array<i32>;

@compute @workgroup_size(64)
fn gather_words4(@builtin(global_invocation_id) gid: vec3u,
                 @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * 64u;
    let quads = p.ow / 4u;
    if i >= p.n * p.co4 * p.oh * quads {
        return;
    }
    let col = (i % quads) * 4u;
    let row = i / quads;
    let oy = row % p.oh;
    let cw = (row / p.oh) % p.co4;
    let n = row / (p.oh * p.co4);
    let m = map[cw];
    if m < 0 {
        out[i] = vec4u(p.pad_word);
        return;
    }
    let v = (((n * p.c4 + u32(m)) * p.h + oy * p.stride) * p.w + col * p.stride) / 4u;
    let a = x[v];
    if p.stride == 1u {
        out[i] = a;
        return;
    }
    let b = x[v + 1u];
    out[i] = vec4u(a.xz, b.xz);
}
