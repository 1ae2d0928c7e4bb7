// qconv prelude: each lane loads the weight words of a step itself (any adapter).
struct W8 { a: vec4<u32>, b: vec4<u32> }
fn weights8(wi: u32, lane: u32) -> W8 {
    return W8(vec4<u32>(weight(wi, 0u), weight(wi, 1u), weight(wi, 2u), weight(wi, 3u)),
              vec4<u32>(weight(wi, 4u), weight(wi, 5u), weight(wi, 6u), weight(wi, 7u)));
}
// The float form's 4 weight vec4s at vec4 index `wi` (f32 bits in wt).
struct WF4 { k0: vec4f, k1: vec4f, k2: vec4f, k3: vec4f }
fn weights4f(wi: u32, lane: u32) -> WF4 {
    return WF4(wvec(wi), wvec(wi + 1u), wvec(wi + 2u), wvec(wi + 3u));
}
