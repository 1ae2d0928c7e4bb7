//! An exclusive lock on a folder (e.g. a training run's), held for a process's whole run.
//!
//! The lock is an OS advisory lock (`flock` on unix) on `<dir>/.lock`, which also holds the
//! owner's pid for the error message. The OS drops it when its process dies, so a lock file
//! left by a killed run is stale by construction and simply taken over.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::{Error, Result};

/// Holds `<dir>/.lock` until dropped (which removes the file).
#[derive(Debug)]
pub struct DirLock {
    file: File,
    path: PathBuf,
}

impl DirLock {
    /// Locks `dir` (which must exist), or fails naming the folder and the holder's pid.
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join(".lock");
        // A holder may remove the file between our open and our lock; then the lock we got
        // is on an unlinked file, so open again (a few times at most).
        for _ in 0..8 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    let mut pid = String::new();
                    let _ = file.read_to_string(&mut pid);
                    let pid = pid.trim();
                    let holder = if pid.is_empty() {
                        "another process".to_string()
                    } else {
                        format!("process {pid}")
                    };
                    return Err(Error::format(
                        dir,
                        format!(
                            "folder in use by {holder} (lock file {}); wait for it to finish or choose another folder",
                            path.display()
                        ),
                    ));
                }
                Err(fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
            }
            if !same_file(&file, &path) {
                continue;
            }
            let record = |f: &mut File| -> std::io::Result<()> {
                f.set_len(0)?;
                f.rewind()?;
                writeln!(f, "{}", std::process::id())?;
                f.sync_all()
            };
            record(&mut file).map_err(|e| Error::io(&path, e))?;
            return Ok(DirLock { file, path });
        }
        Err(Error::format(
            &path,
            "lock file keeps disappearing; another process is busy with this folder",
        ))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Remove while still holding the lock; the lock itself goes with the handle.
        let _ = fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

#[cfg(unix)]
fn same_file(f: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &File, path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_and_release_frees_it() {
        let dir = std::env::temp_dir().join(format!("synthcal-lock-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let a = DirLock::acquire(&dir).unwrap();
        let pid = std::process::id().to_string();
        assert_eq!(fs::read_to_string(dir.join(".lock")).unwrap().trim(), pid);
        let e = DirLock::acquire(&dir).unwrap_err().to_string();
        assert!(
            e.contains(&pid) && e.contains(&*dir.to_string_lossy()),
            "{e}"
        );
        drop(a);
        assert!(!dir.join(".lock").exists());
        // A lock file left by a dead process (no OS lock on it) is taken over.
        fs::write(dir.join(".lock"), "4000000000\n").unwrap();
        let b = DirLock::acquire(&dir).unwrap();
        assert_eq!(fs::read_to_string(dir.join(".lock")).unwrap().trim(), pid);
        drop(b);
        let _ = fs::remove_dir_all(&dir);
    }
}
