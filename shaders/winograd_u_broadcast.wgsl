// The fused Winograd kernel's weight broadcasts (with winograd_u_subgroup.wgsl or
// winograd_u_texture.wgsl, which load lane l's share): channel c's weights come from lane c.
fn u_0(m: P9, j: u32) -> P9 {
    return P9(subgroupBroadcast(m.a, 0u), subgroupBroadcast(m.b, 0u), subgroupBroadcast(m.c, 0u), subgroupBroadcast(m.d, 0u), subgroupBroadcast(m.e, 0u), subgroupBroadcast(m.f, 0u), subgroupBroadcast(m.g, 0u), subgroupBroadcast(m.h, 0u), subgroupBroadcast(m.i, 0u));
}
fn u_1(m: P9, j: u32) -> P9 {
    return P9(subgroupBroadcast(m.a, 1u), subgroupBroadcast(m.b, 1u), subgroupBroadcast(m.c, 1u), subgroupBroadcast(m.d, 1u), subgroupBroadcast(m.e, 1u), subgroupBroadcast(m.f, 1u), subgroupBroadcast(m.g, 1u), subgroupBroadcast(m.h, 1u), subgroupBroadcast(m.i, 1u));
}
fn u_2(m: P9, j: u32) -> P9 {
    return P9(subgroupBroadcast(m.a, 2u), subgroupBroadcast(m.b, 2u), subgroupBroadcast(m.c, 2u), subgroupBroadcast(m.d, 2u), subgroupBroadcast(m.e, 2u), subgroupBroadcast(m.f, 2u), subgroupBroadcast(m.g, 2u), subgroupBroadcast(m.h, 2u), subgroupBroadcast(m.i, 2u));
}
fn u_3(m: P9, j: u32) -> P9 {
    return P9(subgroupBroadcast(m.a, 3u), subgroupBroadcast(m.b, 3u), subgroupBroadcast(m.c, 3u), subgroupBroadcast(m.d, 3u), subgroupBroadcast(m.e, 3u), subgroupBroadcast(m.f, 3u), subgroupBroadcast(m.g, 3u), subgroupBroadcast(m.h, 3u), subgroupBroadcast(m.i, 3u));
}
fn u_4(m: P9, j: u32) -> P9 {
    return P9(subgroupBroadcast(m.a, 4u), subgroupBroadcast(m.b, 4u), subgroupBroadcast(m.c, 4u), subgroupBroadcast(m.d, 4u), subgroupBroadcast(m.e, 4u), subgroupBroadcast(m.f, 4u), subgroupBroadcast(m.g, 4u), subgroupBroadcast(m.h, 4u), subgroupBroadcast(m.i, 4u));
}
fn u_5(m: P9, j: u32) -> P9 {
    return P9(subgroupBroadcast(m.a, 5u), subgroupBroadcast(m.b, 5u), subgroupBroadcast(m.c, 5u), subgroupBroadcast(m.d, 5u), subgroupBroadcast(m.e, 5u), subgroupBroadcast(m.f, 5u), subgroupBroadcast(m.g, 5u), subgroupBroadcast(m.h, 5u), subgroupBroadcast(m.i, 5u));
}
fn u_6(m: P9, j: u32) -> P9 {
    return P9(subgroupBroadcast(m.a, 6u), subgroupBroadcast(m.b, 6u), subgroupBroadcast(m.c, 6u), subgroupBroadcast(m.d, 6u), subgroupBroadcast(m.e, 6u), subgroupBroadcast(m.f, 6u), subgroupBroadcast(m.g, 6u), subgroupBroadcast(m.h, 6u), subgroupBroadcast(m.i, 6u));
}
fn u_7(m: P9, j: u32) -> P9 {
    return P9(subgroupBroadcast(m.a, 7u), subgroupBroadcast(m.b, 7u), subgroupBroadcast(m.c, 7u), subgroupBroadcast(m.d, 7u), subgroupBroadcast(m.e, 7u), subgroupBroadcast(m.f, 7u), subgroupBroadcast(m.g, 7u), subgroupBroadcast(m.h, 7u), subgroupBroadcast(m.i, 7u));
}
