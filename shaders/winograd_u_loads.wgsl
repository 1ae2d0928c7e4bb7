// Fused Winograd prelude: every lane loads the weights it uses (any adapter).
@group(0) @binding(2) var<storage, read> u: array<WV>;
struct UF { _unused: u32 }
fn u_fetch(j: u32, lane: u32) -> UF { return UF(0u); }
// Channel c of the block (c constant): its nine vec4s, eight apart.
fn u_at(j: u32) -> P9 {
    return P9(u[j + 0u], u[j + 8u], u[j + 16u], u[j + 24u], u[j + 32u], u[j + 40u], u[j + 48u], u[j + 56u], u[j + 64u]);
}
fn u_0(m: UF, j: u32) -> P9 { return u_at(j + 0u); }
fn u_1(m: UF, j: u32) -> P9 { return u_at(j + 1u); }
fn u_2(m: UF, j: u32) -> P9 { return u_at(j + 2u); }
fn u_3(m: UF, j: u32) -> P9 { return u_at(j + 3u); }
fn u_4(m: UF, j: u32) -> P9 { return u_at(j + 4u); }
fn u_5(m: UF, j: u32) -> P9 { return u_at(j + 5u); }
fn u_6(m: UF, j: u32) -> P9 { return u_at(j + 6u); }
fn u_7(m: UF, j: u32) -> P9 { return u_at(j + 7u); }
