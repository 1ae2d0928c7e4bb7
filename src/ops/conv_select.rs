//! Which conv kernel variant runs a given shape. By default a fixed rule per kind of adapter
//! ([`default_variant`]); with `SYNTHCAL_CONV=auto`, measured once per (adapter, shape) at first
//! use, kept in memory and in a small JSON file under the user's cache directory, so later runs
//! skip the measurement; `direct`, `winograd2`, `winograd4` or `fused4` force a variant where it
//! applies (tests force variants through `conv2d`'s own argument instead). Timing stays opt-in:
//! a choice timed on a busy machine is noise, and it would make FP32 logits depend on the load
//! at first use.

use crate::gpu::Gpu;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// A conv kernel variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvVariant {
    /// The register-blocked direct kernels of `shaders/conv2d.wgsl`.
    Direct,
    /// Winograd F(2x2, 3x3) (stride-1 undilated 3x3, groups 1).
    Winograd2,
    /// Winograd F(4x4, 3x3) (stride-1 undilated 3x3, groups 1).
    Winograd4,
    /// Winograd F(4x4, 3x3) in one fused dispatch (same convs as `Winograd4`).
    Fused4,
}

impl ConvVariant {
    pub fn name(self) -> &'static str {
        match self {
            ConvVariant::Direct => "direct",
            ConvVariant::Winograd2 => "winograd2",
            ConvVariant::Winograd4 => "winograd4",
            ConvVariant::Fused4 => "fused4",
        }
    }

    pub fn parse(s: &str) -> Option<ConvVariant> {
        match s {
            "direct" => Some(ConvVariant::Direct),
            "winograd2" => Some(ConvVariant::Winograd2),
            "winograd4" => Some(ConvVariant::Winograd4),
            "fused4" => Some(ConvVariant::Fused4),
            _ => None,
        }
    }
}

/// How the variant of a conv is chosen (`SYNTHCAL_CONV`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Unset or `default`: a fixed per-shape rule per kind of adapter ([`default_variant`]),
    /// no timing, so the same adapter always gives the same logits.
    Rule,
    /// `auto`: measured at first use per adapter and shape, and cached.
    Auto,
    /// A variant named: forced wherever it applies.
    Forced(ConvVariant),
}

/// The mode `SYNTHCAL_CONV` asks for; an unknown value warns and takes the rule.
pub fn mode() -> Mode {
    let Ok(v) = std::env::var("SYNTHCAL_CONV") else {
        return Mode::Rule;
    };
    match v.as_str() {
        "auto" => Mode::Auto,
        "default" | "" => Mode::Rule,
        _ => match ConvVariant::parse(&v) {
            Some(c) => Mode::Forced(c),
            None => {
                log::warn!(
                    "SYNTHCAL_CONV={v:?} is not default, auto, direct, winograd2, winograd4 or \
                     fused4; the default rule runs"
                );
                Mode::Rule
            }
        },
    }
}

/// Output pixels (images x map) below which a call keeps the direct kernel on CPU adapters,
/// FP32 and INT8 alike: fewer Winograd tiles than that leave the CPU's threads idle.
pub const MIN_WINOGRAD_PIXELS: usize = 4096;

/// The default variant of a stride-1, undilated 3x3 conv with groups 1 (`ci` -> `co` channels,
/// `n` images of `hw` output pixels), without timing. On CPU adapters with subgroups of 8 lanes
/// (lavapipe), measured at batch 64 (see README): the fused F(4x4, 3x3) kernel is fastest on
/// ResNet-20's shapes and on 64 channels at 32x32, the 3-dispatch F(4x4, 3x3) about as fast
/// from 128 channels on 32x32 and larger images, where it takes them (its scratch allowing).
/// Small batches keep the direct kernel: a few hundred Winograd tiles leave the CPU's threads
/// idle (ResNet-20 at batch 1 ran over twice as slow fused). Other adapters
/// keep the direct kernel: nothing was measured there.
pub fn default_variant(gpu: &Gpu, ci: usize, co: usize, n: usize, hw: usize) -> ConvVariant {
    if gpu.info.device_type != wgpu::DeviceType::Cpu
        || !gpu.subgroups
        || n * hw < MIN_WINOGRAD_PIXELS
    {
        return ConvVariant::Direct;
    }
    if ci.min(co) >= 128 && hw >= 1024 {
        ConvVariant::Winograd4
    } else {
        ConvVariant::Fused4
    }
}

/// Choices made so far, keyed by adapter and shape; loaded from disk on first use.
static CHOICES: Mutex<Option<HashMap<String, ConvVariant>>> = Mutex::new(None);

/// The adapter part of a key: kernels are compared per driver and per build of the kernels.
fn adapter_key(gpu: &Gpu) -> String {
    let i = &gpu.info;
    format!(
        "{} {:?} {} {} v{}",
        i.name,
        i.backend,
        i.driver,
        i.driver_info,
        env!("CARGO_PKG_VERSION")
    )
}

/// Time the timed round of `choose` aims for per candidate: long enough to average out a lone
/// call's noise and, where the adapter has no timestamps and calls are timed by the host's
/// clock, a submit's round trip (about 0.1-0.2 ms on a discrete GPU's driver), which would
/// otherwise decide between kernels that run for tens of microseconds.
const TIMED_ROUND: Duration = Duration::from_millis(10);

/// The cached choice for `shape` (a description of the conv's shape) on `gpu`, or the faster of
/// `candidates` as `time(variant, calls)` measures it (the choice is then cached). `time`
/// returns the summed time of `calls` calls, each timed alone (`gpu_time_each`). Each candidate
/// runs once to warm up and once timed; then each runs `calls` times, `calls` chosen from the
/// fastest single call so the round takes about `TIMED_ROUND`; a candidate's figure is the
/// better of its time per call in the two timed rounds.
pub fn choose(
    gpu: &Gpu,
    shape: &str,
    candidates: &[ConvVariant],
    mut time: impl FnMut(ConvVariant, usize) -> crate::error::Result<Duration>,
) -> crate::error::Result<ConvVariant> {
    let key = format!("{} | {shape}", adapter_key(gpu));
    {
        let mut guard = CHOICES.lock().unwrap_or_else(|e| e.into_inner());
        let map = guard.get_or_insert_with(load);
        if let Some(&v) = map.get(&key) {
            if candidates.contains(&v) {
                return Ok(v);
            }
        }
    }
    for &c in candidates {
        time(c, 1)?;
    }
    let mut best = candidates
        .iter()
        .map(|&c| time(c, 1))
        .collect::<crate::error::Result<Vec<_>>>()?;
    let fastest = best.iter().min().copied().unwrap_or(TIMED_ROUND);
    let calls = (TIMED_ROUND.as_secs_f64() / fastest.as_secs_f64().max(1e-6)).ceil() as usize;
    let calls = calls.clamp(1, 256);
    for (i, &c) in candidates.iter().enumerate() {
        best[i] = best[i].min(time(c, calls)? / calls as u32);
    }
    let pick = (0..candidates.len())
        .min_by_key(|&i| best[i])
        .map_or(ConvVariant::Direct, |i| candidates[i]);
    log::debug!(
        "conv variant for {shape}: {} ({best:?} per call)",
        pick.name()
    );
    let mut guard = CHOICES.lock().unwrap_or_else(|e| e.into_inner());
    let map = guard.get_or_insert_with(load);
    map.insert(key, pick);
    save(map);
    Ok(pick)
}

/// `$SYNTHCAL_CACHE_DIR`, else `$XDG_CACHE_HOME/synthcal`, else `~/.cache/synthcal`; none in
/// unit tests (they must not read or write the user's cache).
fn cache_file() -> Option<PathBuf> {
    if cfg!(test) {
        return None;
    }
    let dir = match std::env::var_os("SYNTHCAL_CACHE_DIR") {
        Some(d) => PathBuf::from(d),
        None => match std::env::var_os("XDG_CACHE_HOME") {
            Some(d) if !d.is_empty() => PathBuf::from(d).join("synthcal"),
            _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache/synthcal"),
        },
    };
    Some(dir.join("conv_variants.json"))
}

fn load() -> HashMap<String, ConvVariant> {
    cache_file().map(|f| load_from(&f)).unwrap_or_default()
}

fn save(map: &HashMap<String, ConvVariant>) {
    if let Some(file) = cache_file() {
        save_to(&file, map);
    }
}

/// The cached choices; a missing, unreadable or corrupt file is an empty cache.
fn load_from(file: &Path) -> HashMap<String, ConvVariant> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return HashMap::new();
    };
    let raw: HashMap<String, String> = serde_json::from_str(&text).unwrap_or_default();
    raw.into_iter()
        .filter_map(|(k, v)| ConvVariant::parse(&v).map(|v| (k, v)))
        .collect()
}

/// Writes the choices atomically (temporary file + rename); failures only cost a re-measure.
fn save_to(file: &Path, map: &HashMap<String, ConvVariant>) {
    let raw: std::collections::BTreeMap<&str, &str> =
        map.iter().map(|(k, v)| (k.as_str(), v.name())).collect();
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(file.parent().unwrap_or(file))?;
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(&raw).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, file)
    };
    if let Err(e) = write() {
        log::debug!("conv variant cache {}: {e}", file.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_file_round_trips_and_survives_corruption() {
        let dir = std::env::temp_dir().join(format!("synthcal-conv-cache-{}", std::process::id()));
        let file = dir.join("sub/conv_variants.json");
        assert!(
            load_from(&file).is_empty(),
            "missing file is an empty cache"
        );
        let map = HashMap::from([
            ("a | conv 1".to_string(), ConvVariant::Winograd4),
            ("a | conv 2".to_string(), ConvVariant::Direct),
        ]);
        save_to(&file, &map);
        assert_eq!(load_from(&file), map);
        std::fs::write(&file, b"{\"a\": \"winog").unwrap();
        assert!(
            load_from(&file).is_empty(),
            "truncated file is an empty cache"
        );
        std::fs::write(&file, br#"{"a": "direct", "b": "simd"}"#).unwrap();
        let partial = load_from(&file);
        assert_eq!(
            partial.len(),
            1,
            "unknown variants are dropped: {partial:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn choose_measures_once_and_picks_the_faster() {
        crate::ops::skip_without_gpu!();
        let g = crate::testing::gpu();
        let shape = format!("test shape {}", std::process::id());
        let both = [ConvVariant::Direct, ConvVariant::Winograd2];
        // A timing costs 1 ms on top of the calls (1.3 for Winograd2, as if noise hit it), each
        // call 0.2 ms (0.05): one call favours Direct, the fixed cost spread over many does not.
        let mut runs = Vec::new();
        let pick = choose(&g, &shape, &both, |v, calls| {
            runs.push((v, calls));
            let (submit, call) = match v {
                ConvVariant::Direct => (1.0, 0.2),
                _ => (1.3, 0.05),
            };
            Ok(Duration::from_secs_f64(
                (submit + call * calls as f64) / 1e3,
            ))
        })
        .unwrap();
        assert_eq!(pick, ConvVariant::Winograd2);
        // Warm-up and lone runs, then 9 calls each: 10 ms over the fastest lone run's 1.2 ms.
        let (d, w) = (ConvVariant::Direct, ConvVariant::Winograd2);
        assert_eq!(runs, [(d, 1), (w, 1), (d, 1), (w, 1), (d, 9), (w, 9)]);
        let again = choose(&g, &shape, &both, |_, _| panic!("cached: no measurement")).unwrap();
        assert_eq!(again, ConvVariant::Winograd2);
        // A cached variant that is not a candidate here is not returned.
        let direct = choose(&g, &shape, &[ConvVariant::Direct], |_, _| {
            Ok(Duration::ZERO)
        })
        .unwrap();
        assert_eq!(direct, ConvVariant::Direct);
    }
}
