//! Running the `synthcal` binary from integration tests.

use std::ffi::OsStr;
use std::fmt::Debug;
use std::path::PathBuf;
use std::process::Output;

/// Runs the CLI on lavapipe (or whatever Vulkan adapter there is).
pub fn synthcal<S: AsRef<OsStr>>(args: &[S]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_synthcal"))
        .args(args)
        .env("WGPU_BACKEND", "vulkan")
        .output()
        .unwrap()
}

/// Runs the CLI and returns its stdout; fails the test with its stderr when it fails.
pub fn ok<S: AsRef<OsStr> + Debug>(args: &[S]) -> String {
    let r = synthcal(args);
    let (out, err) = (
        String::from_utf8_lossy(&r.stdout).into_owned(),
        String::from_utf8_lossy(&r.stderr).into_owned(),
    );
    assert!(r.status.success(), "{args:?}:\n{out}\n{err}");
    out
}

/// Runs the CLI, which must fail with a message (not a panic); returns its stderr.
pub fn refused<S: AsRef<OsStr> + Debug>(args: &[S]) -> String {
    let r = synthcal(args);
    let err = String::from_utf8_lossy(&r.stderr).into_owned();
    assert!(!r.status.success(), "{args:?} succeeded");
    assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
    err
}

/// A folder under the system's temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// An empty `TempDir` named after `name` and this process.
pub fn temp_dir(name: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("synthcal-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}
