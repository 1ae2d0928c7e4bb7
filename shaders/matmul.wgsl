// Batched C[b] = op(A[b]) * op(B[b]) (+ bias[n], activation): register-blocked, no workgroup
// memory (barriers are very slow on CPU drivers). A second prelude gives the A tiles of a step:
// matmul_a_plain.wgsl loads them per lane, matmul_a_subgroup.wgsl shares them across a subgroup. Each invocation accumulates TM4*4 rows x
// TN4*4 columns as 4x4 matrix tiles, four k at a time. The op prepends one of two preludes that
// declare `a`, `b`, `c` and their accessors: vec4 loads when every contiguous axis is a multiple
// of 4 (matmul_vec4.wgsl), scalar loads otherwise (matmul_scalar.wgsl).

struct Params {
    m: u32, n: u32, k: u32, batch: u32,
    a_batch: u32, b_batch: u32, tiles_m: u32, tiles_n: u32,
    _p0: u32, slope: f32, has_bias: u32, _p1: u32,
}

override TA: bool = false; // A is [K, M] (transposed) instead of [M, K]
override TB: bool = false; // B is [N, K] instead of [K, N]
override TM4: u32 = 2u;
override TN4: u32 = 2u;
override WG: u32 = 64u;
// The row block comes from the grid's z (with the batch): all lanes of a workgroup share their A
// tiles, and no lane returns early (what the subgroup prelude needs).
override MZ: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> bias: array<f32>;

fn activate(v: vec4f) -> vec4f {
    return act_vec4(v, ACT, p.slope);
}

// A[m..m+4, k..k+4] as columns over m indexed by k. Rows past M read harmless values that are
// never stored (out-of-bounds loads are defined in WebGPU).
fn tile_a(ao: u32, m: u32, k: u32) -> mat4x4f {
    if TA {
        let i = ao + k * p.m + m;
        return mat4x4f(lda4(i), lda4(i + p.m), lda4(i + 2u * p.m), lda4(i + 3u * p.m));
    }
    let i = ao + m * p.k + k;
    return transpose(mat4x4f(lda4(i), lda4(i + p.k), lda4(i + 2u * p.k), lda4(i + 3u * p.k)));
}

// B[k..k+4, n..n+4] as columns over k indexed by n.
fn tile_b(bo: u32, k: u32, n: u32) -> mat4x4f {
    if TB {
        let i = bo + n * p.k + k;
        return mat4x4f(ldb4(i), ldb4(i + p.k), ldb4(i + 2u * p.k), ldb4(i + 3u * p.k));
    }
    let i = bo + k * p.n + n;
    return transpose(mat4x4f(ldb4(i), ldb4(i + p.n), ldb4(i + 2u * p.n), ldb4(i + 3u * p.n)));
}

// Single-k column of A (over m) and row of B (over n), for K % 4 leftovers.
fn col_a(ao: u32, m: u32, k: u32) -> vec4f {
    if TA { return lda4(ao + k * p.m + m); }
    let i = ao + m * p.k + k;
    return vec4f(lda1(i), lda1(i + p.k), lda1(i + 2u * p.k), lda1(i + 3u * p.k));
}

fn row_b(bo: u32, k: u32, n: u32) -> vec4f {
    if TB {
        let i = bo + n * p.k + k;
        return vec4f(ldb1(i), ldb1(i + p.k), ldb1(i + 2u * p.k), ldb1(i + 3u * p.k));
    }
    return ldb4(bo + k * p.n + n);
}

fn outer(a: vec4f, b: vec4f) -> mat4x4f {
    return mat4x4f(a * b.x, a * b.y, a * b.z, a * b.w);
}

// Stores rows m..m+4, columns n..n+4 of one tile (columns of `acc` are over m).
fn store(acc: mat4x4f, co: u32, m: u32, n: u32) {
    if n >= p.n { return; }
    var b = vec4f();
    if p.has_bias != 0u {
        for (var j = 0u; j < 4u; j++) { b[j] = bias[min(n + j, p.n - 1u)]; }
    }
    let rows = transpose(acc);
    for (var r = 0u; r < 4u; r++) {
        if m + r < p.m { stc4(co + (m + r) * p.n + n, activate(rows[r] + b), min(4u, p.n - n)); }
    }
}

@compute @workgroup_size(WG)
fn matmul(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u,
          @builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
    let t = gid.x + gid.y * nwg.x * WG;
    var z = wid.z;
    var n0: u32;
    var m0: u32;
    if MZ {
        // Lanes past the last column block compute on clamped reads and store nothing; whole
        // groups of 8 past it return (the subgroup prelude needs every lane of a group).
        if t - li % 8u >= p.tiles_n { return; }
        z = wid.z / p.tiles_m;
        m0 = (wid.z % p.tiles_m) * TM4 * 4u;
        n0 = t * TN4 * 4u;
    } else {
        if t >= p.tiles_m * p.tiles_n { return; }
        n0 = (t % p.tiles_n) * TN4 * 4u;
        m0 = (t / p.tiles_n) * TM4 * 4u;
    }
    let lane = li % 8u;
    let ao = (z % p.a_batch) * p.m * p.k;
    let bo = (z % p.b_batch) * p.k * p.n;
    var c00 = mat4x4f(); var c01 = mat4x4f(); var c02 = mat4x4f(); var c03 = mat4x4f();
    var c10 = mat4x4f(); var c11 = mat4x4f(); var c12 = mat4x4f(); var c13 = mat4x4f();
    var c20 = mat4x4f(); var c21 = mat4x4f(); var c22 = mat4x4f(); var c23 = mat4x4f();
    var c30 = mat4x4f(); var c31 = mat4x4f(); var c32 = mat4x4f(); var c33 = mat4x4f();
    let k4 = p.k & ~3u;
    for (var k = 0u; k < k4; k += 4u) {
        let b0 = tile_b(bo, k, n0);
        var b1 = mat4x4f(); var b2 = mat4x4f(); var b3 = mat4x4f();
        if TN4 > 1u { b1 = tile_b(bo, k, n0 + 4u); }
        if TN4 > 2u { b2 = tile_b(bo, k, n0 + 8u); }
        if TN4 > 3u { b3 = tile_b(bo, k, n0 + 12u); }
        let at = a_tiles(ao, m0, k, lane);
        let a0 = at.a0;
        c00 += a0 * b0;
        if TN4 > 1u { c01 += a0 * b1; }
        if TN4 > 2u { c02 += a0 * b2; }
        if TN4 > 3u { c03 += a0 * b3; }
        if TM4 > 1u {
            let a1 = at.a1;
            c10 += a1 * b0;
            if TN4 > 1u { c11 += a1 * b1; }
            if TN4 > 2u { c12 += a1 * b2; }
            if TN4 > 3u { c13 += a1 * b3; }
        }
        if TM4 > 2u {
            let a2 = at.a2;
            c20 += a2 * b0;
            if TN4 > 1u { c21 += a2 * b1; }
            if TN4 > 2u { c22 += a2 * b2; }
            if TN4 > 3u { c23 += a2 * b3; }
        }
        if TM4 > 3u {
            let a3 = at.a3;
            c30 += a3 * b0;
            if TN4 > 1u { c31 += a3 * b1; }
            if TN4 > 2u { c32 += a3 * b2; }
            if TN4 > 3u { c33 += a3 * b3; }
        }
    }
    for (var k = k4; k < p.k; k++) {
        let b0 = row_b(bo, k, n0);
        let b1 = row_b(bo, k, n0 + 4u);
        let b2 = row_b(bo, k, n0 + 8u);
        let b3 = row_b(bo, k, n0 + 12u);
        let a0 = col_a(ao, m0, k);
        c00 += outer(a0, b0); c01 += outer(a0, b1); c02 += outer(a0, b2); c03 += outer(a0, b3);
        let a1 = col_a(ao, m0 + 4u, k);
        c10 += outer(a1, b0); c11 += outer(a1, b1); c12 += outer(a1, b2); c13 += outer(a1, b3);
        let a2 = col_a(ao, m0 + 8u, k);
        c20 += outer(a2, b0); c21 += outer(a2, b1); c22 += outer(a2, b2); c23 += outer(a2, b3);
        let a3 = col_a(ao, m0 + 12u, k);
        c30 += outer(a3, b0); c31 += outer(a3, b1); c32 += outer(a3, b2); c33 += outer(a3, b3);
    }
    let co = z * p.m * p.n;
    store(c00, co, m0, n0);
    if TN4 > 1u { store(c01, co, m0, n0 + 4u); }
    if TN4 > 2u { store(c02, co, m0, n0 + 8u); }
    if TN4 > 3u { store(c03, co, m0, n0 + 12u); }
    if TM4 > 1u {
        store(c10, co, m0 + 4u, n0);
        if TN4 > 1u { store(c11, co, m0 + 4u, n0 + 4u); }
        if TN4 > 2u { store(c12, co, m0 + 4u, n0 + 8u); }
        if TN4 > 3u { store(c13, co, m0 + 4u, n0 + 12u); }
    }
    if TM4 > 2u {
        store(c20, co, m0 + 8u, n0);
        if TN4 > 1u { store(c21, co, m0 + 8u, n0 + 4u); }
        if TN4 > 2u { store(c22, co, m0 + 8u, n0 + 8u); }
        if TN4 > 3u { store(c23, co, m0 + 8u, n0 + 12u); }
    }
    if TM4 > 3u {
        store(c30, co, m0 + 12u, n0);
        if TN4 > 1u { store(c31, co, m0 + 12u, n0 + 4u); }
        if TN4 > 2u { store(c32, co, m0 + 12u, n0 + 8u); }
        if TN4 > 3u { store(c33, co, m0 + 12u, n0 + 12u); }
    }
}
