//! Test support, shared by the library's unit tests and the integration tests (`tests/common`);
//! not part of the API: one GPU per test binary, and the skip policy.

use crate::gpu::Gpu;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// Where tests find the real data and checkpoints: `$SYNTHCAL_SHARED`, else `../shared`.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("SYNTHCAL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared"))
}

/// A test that cannot run here: a failure when `CI=true` (CI must run everything), else
/// `SKIPPED: reason` on the process's stderr. Written through `io::Write` because libtest
/// captures only the print macros, so the line shows even for a passing test.
/// Property tests skip once per case; the line is written once per test (thread).
pub fn skip(reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and this test cannot run: {reason}");
    }
    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if !seen.contains(&test) {
        let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {reason}");
        seen.push(test);
    }
}

fn adapter() -> &'static std::result::Result<Arc<Gpu>, String> {
    static GPU: OnceLock<std::result::Result<Arc<Gpu>, String>> = OnceLock::new();
    GPU.get_or_init(|| Gpu::default_adapter().map_err(|e| e.to_string()))
}

/// The test GPU, or None after `skip` (a failure in CI) when there is no adapter.
pub fn try_gpu() -> Option<Arc<Gpu>> {
    match adapter() {
        Ok(g) => Some(g.clone()),
        Err(e) => {
            skip(&format!(
                "no GPU adapter: {}",
                e.lines().next().unwrap_or("")
            ));
            None
        }
    }
}

/// The test GPU, for tests that began with `skip_without_gpu!()`.
pub fn gpu() -> Arc<Gpu> {
    match adapter() {
        Ok(g) => g.clone(),
        Err(e) => panic!("GPU tests need an adapter (install lavapipe): {e}"),
    }
}
