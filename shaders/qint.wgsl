// Packed-int8 helpers shared by the INT8 modules (qconv.wgsl, qlayout.wgsl, qwinograd.wgsl).

// Sign-extends the four bytes with shifts only (no packed-integer extension needed).
fn unpack(v: u32) -> vec4<i32> {
    return (vec4<i32>(bitcast<i32>(v)) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u);
}

fn pack(v: vec4<i32>) -> u32 {
    let b = bitcast<vec4<u32>>(v) & vec4<u32>(255u);
    return b.x | (b.y << 8u) | (b.z << 16u) | (b.w << 24u);
}

// v / 2^s rounded half to even, in integers (as cpu::qconv::shift_rne).
fn shift_rne(v: vec4<i32>, s: u32) -> vec4<i32> {
    if s == 0u {
        return v;
    }
    let floor = v >> vec4<u32>(s);
    let rem = v - (floor << vec4<u32>(s));
    let half = vec4<i32>(1i << (s - 1u));
    let up = (rem > half) | ((rem == half) & ((floor & vec4<i32>(1)) == vec4<i32>(1)));
    return floor + select(vec4<i32>(0), vec4<i32>(1), up);
}

// An epilogue's int8 word for channels c..c+3 from their scaled values v (quant::int8): round
// half to even, clamp to [lo, hi], channels from `count` on real 0, stored minus `offset`.
fn requant_word(v: vec4f, c: u32, count: u32, lo: i32, hi: i32, offset: i32) -> u32 {
    let q = vec4i(clamp(round(v), vec4f(f32(lo)), vec4f(f32(hi))));
    let real = select(vec4i(0), q, c + vec4u(0u, 1u, 2u, 3u) < vec4u(count));
    return pack(real - offset);
}

// A residual add's constants (quant::int8::QAdd): stored offsets, multipliers, shift, clamp.
struct AddK { a_offset: i32, b_offset: i32, ma: i32, mb: i32, shift: u32, lo: i32, hi: i32, out_offset: i32 }

// Packed words a + b in exact integers: clamp(rne((qa * ma + qb * mb) / 2^shift)), packed as
// stored. Lanes past C need no mask: both inputs hold real 0 there, which stays real 0.
fn add_word(a: u32, b: u32, k: AddK) -> u32 {
    let total = (unpack(a) + k.a_offset) * k.ma + (unpack(b) + k.b_offset) * k.mb;
    return pack(clamp(shift_rne(total, k.shift), vec4i(k.lo), vec4i(k.hi)) - k.out_offset);
}
