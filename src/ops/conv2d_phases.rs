//! The plan of a strided conv's input gradient as stride x stride stride-1 convs of dy, one per
//! output phase (the rows `py + stride * m` and columns `px + stride * mx` of dx), each with the
//! kernel taps that reach that phase (`conv2d_grad` runs it). The zero-inserted form (its
//! fallback) multiplies by its inserted zeros too: three multiply-adds in four at stride 2.
//!
//! Tests: here (the plan against a brute-force walk) and `tests/grad.rs` (strided convs' input
//! gradients against exact f64 gradients).

/// One phase along one axis: dx's indices `off + stride * m` for `m < len` take the taps
/// `r + stride * j` (`j < taps`) of the kernel, as a stride-1 conv of dy padded by `pad`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Phase {
    pub off: usize,
    pub r: usize,
    pub taps: usize,
    pub pad: [usize; 2],
    pub len: usize,
}

/// The phases of an axis with `input` pixels, `dy` gradient pixels, a `k`-tap kernel, `stride`
/// and `pad` (before the input); None where one would have no tap, no pixel or a negative pad
/// (large pads: the caller zero-inserts instead).
///
/// dx[s*m + o] = sum over j of dy[m + c - j] * w[r + s*j] with r = (o + pad) % s and
/// c = (o + pad) / s: a correlation of dy with those taps reversed, padded by taps - 1 - c.
pub(super) fn phases(
    input: usize,
    dy: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> Option<Vec<Phase>> {
    (0..stride)
        .map(|off| {
            let r = (off + pad) % stride;
            let c = (off + pad) / stride;
            let taps = k.checked_sub(r)?.div_ceil(stride);
            let len = input.checked_sub(off)?.div_ceil(stride);
            let lo = taps.checked_sub(1)?.checked_sub(c)?;
            let hi = (len + taps - 1).checked_sub(dy + lo)?;
            (len > 0).then_some(Phase {
                off,
                r,
                taps,
                pad: [lo, hi],
                len,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every dx index in exactly one phase, and each phase's taps and pads what a brute-force
    /// walk over the forward conv's (output, tap) pairs gives.
    #[test]
    fn phases_cover_every_input_pixel_with_its_taps() {
        for (input, k, stride, pad) in [(8, 4, 2, 1), (7, 3, 2, 0), (7, 4, 2, 1), (10, 5, 3, 2)] {
            let dy = (input + 2 * pad - k) / stride + 1;
            let ph = phases(input, dy, k, stride, pad).unwrap();
            let mut seen = vec![0; input];
            for q in &ph {
                for m in 0..q.len {
                    let i = q.off + stride * m;
                    seen[i] += 1;
                    // (dy index, tap) pairs the forward conv links to input i.
                    let want: Vec<(usize, usize)> = (0..dy)
                        .flat_map(|o| (0..k).map(move |t| (o, t)))
                        .filter(|&(o, t)| o * stride + t == i + pad)
                        .collect();
                    // The phase's correlation: tap u of the reversed kernel reads dy[m + u - lo].
                    let mut got: Vec<(usize, usize)> = (0..q.taps)
                        .filter_map(|u| {
                            let o = (m + u).checked_sub(q.pad[0]).filter(|&o| o < dy)?;
                            Some((o, q.r + stride * (q.taps - 1 - u)))
                        })
                        .collect();
                    got.sort();
                    assert_eq!(got, want, "input {input} k {k} s {stride} p {pad} i {i}");
                }
                assert_eq!(dy + q.pad[0] + q.pad[1] + 1 - q.taps, q.len);
            }
            assert!(seen.iter().all(|&c| c == 1), "{seen:?}");
        }
        // A pad beyond the kernel leaves a phase with no reach into dy: the caller zero-inserts.
        assert_eq!(phases(4, 5, 2, 2, 3), None);
    }
}
