//! Limits on user-given counts: the memory check made before any allocation whose size a
//! user count sets (so that a huge count is a clear error, not a panic or an abort).

use crate::error::{Error, Result};

/// The most images per class that any command generates or draws (10^8 per class is 3 TB of
/// pixels: beyond it only the memory check could answer, so the parser answers first).
pub const MAX_PER_CLASS: usize = 100_000_000;

/// Images per GPU submit: a batch beyond this exceeds every adapter's buffer limits.
pub const MAX_BATCH: usize = 10_000;

/// Used when the available memory cannot be read (no /proc/meminfo).
const FALLBACK_AVAILABLE: u64 = 32 << 30;

/// The memory available to new allocations now: Linux's MemAvailable (capped, in a container,
/// by its cgroup v2 memory limit), else a 32 GiB cap.
pub fn available_memory() -> u64 {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let meminfo = read("/proc/meminfo").and_then(|s| {
        let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kb.checked_mul(1024)
    });
    // The cgroup's limit itself, not less its usage: that counts reclaimable page cache.
    // "max" (no limit) does not parse, and is ignored.
    let cgroup = read("/sys/fs/cgroup/memory.max").and_then(|s| s.trim().parse::<u64>().ok());
    match (meminfo, cgroup) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(FALLBACK_AVAILABLE),
    }
}

/// Checks an allocation of the product of `factors` bytes (e.g. `[per_class, classes,
/// bytes_per_image]`) before it is made: refused when the product overflows or exceeds the
/// available memory, with an error that starts with `what` (the flag and its value). Returns
/// the byte count.
pub fn check_alloc(what: &str, factors: &[usize]) -> Result<u64> {
    check_alloc_within(what, factors, available_memory())
}

/// [`check_alloc`] against a given number of available bytes.
pub fn check_alloc_within(what: &str, factors: &[usize], available: u64) -> Result<u64> {
    let bytes = factors
        .iter()
        .try_fold(1u64, |acc, &f| acc.checked_mul(f as u64))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{what}: needs more than 2^64 bytes of memory; choose a smaller count"
            ))
        })?;
    if bytes > available {
        return Err(Error::Invalid(format!(
            "{what}: needs {} ({bytes} bytes) of memory, but only {} are available; choose a smaller count",
            human(bytes),
            human(available)
        )));
    }
    Ok(bytes)
}

fn human(bytes: u64) -> String {
    let units = ["bytes", "KB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_check_overflow_and_memory() {
        assert_eq!(
            check_alloc_within("x", &[10, 3072], 1 << 20).unwrap(),
            30720
        );
        let e = check_alloc_within(
            "--per-class 18446744073709551615",
            &[usize::MAX, 10],
            1 << 40,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("--per-class 18446744073709551615: needs more than 2^64"),
            "{e}"
        );
        let e = check_alloc_within("--per-class 100000000", &[100_000_000, 10, 3072], 8 << 30)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--per-class 100000000: needs 3.1 TB (3072000000000 bytes)")
                && e.contains("only 8.6 GB"),
            "{e}"
        );
        // The real check reads this machine's memory: a terabyte-scale request fails.
        assert!(check_alloc("t", &[1 << 30, 1 << 30, 1 << 10]).is_err());
        assert!(check_alloc("t", &[1 << 10]).is_ok());
        assert!(available_memory() > 0);
    }
}
