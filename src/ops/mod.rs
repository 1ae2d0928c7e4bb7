//! Kernel launches, one file per op family. Each op checks shapes (typed errors, never panics),
//! allocates its output from the pool and records its dispatch on a `Stream`.

pub mod batchnorm;
mod checks;
pub mod conv2d;
pub mod conv2d_grad;
pub mod elementwise;
pub mod embed;
pub mod glu;
pub mod grad;
pub mod layout;
pub mod matmul;
pub mod pool;
pub mod qconv;
pub mod softmax;
pub mod stats;

pub use crate::cpu::elementwise::Act;

/// Parameter structs are plain `u32`/`f32` records uploaded as uniforms.
pub(crate) fn bytes_of<T: bytemuck::Pod>(p: &T) -> &[u8] {
    bytemuck::bytes_of(p)
}

/// Returns from the calling test (after `testing::skip`) when there is no GPU adapter.
#[cfg(test)]
macro_rules! skip_without_gpu {
    () => {
        if crate::ops::testing::try_gpu().is_none() {
            return;
        }
    };
    (proptest) => {
        if crate::ops::testing::try_gpu().is_none() {
            return Ok(());
        }
    };
}
#[cfg(test)]
pub(crate) use skip_without_gpu;

/// Shared test fixtures: one GPU per test binary, and the skip policy.
#[cfg(test)]
pub(crate) mod testing {
    use crate::gpu::Gpu;
    use std::io::Write;
    use std::sync::{Arc, Mutex, OnceLock};

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
}
