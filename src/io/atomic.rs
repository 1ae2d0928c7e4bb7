//! Crash-safe file replacement: readers see the old file or the new one,
//! never a partial write.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `bytes` to `path` atomically (temp file, fsync, rename).
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Like [`write_atomic`], with the content produced by `write` into the
/// temporary file (wrap it in a `BufWriter` for many small writes). Refuses to replace
/// anything but a regular file: the rename would put a file in place of a device, a FIFO, a
/// symbolic link or a folder.
pub fn write_atomic_with<F>(path: impl AsRef<Path>, write: F) -> io::Result<()>
where
    F: FnOnce(&mut File) -> io::Result<()>,
{
    let path = path.as_ref();
    refuse_non_regular(path)?;
    let tmp = tmp_path(path)?;
    // create_new: never write through whatever already sits at the temporary name.
    let f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    let result = (|mut f: File| {
        write(&mut f)?;
        f.sync_all()?;
        drop(f);
        refuse_non_regular(path)?;
        fs::rename(&tmp, path)?;
        sync_parent(path);
        Ok(())
    })(f);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn refuse_non_regular(path: &Path) -> io::Result<()> {
    match super::output::non_regular(path) {
        Ok(None) => Ok(()),
        Ok(Some(kind)) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is {kind}; refusing to replace it", path.display()),
        )),
        Err(super::Error::Io { source, .. }) => Err(source),
        Err(e) => Err(io::Error::other(e.to_string())),
    }
}

/// `<path>.<pid>.<n>.tmp` beside the target, so the rename stays on one filesystem; the pid
/// and a per-process counter give every writer its own temporary file.
fn tmp_path(path: &Path) -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        )
    })?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp = name.to_os_string();
    tmp.push(format!(".{}.{n}.tmp", std::process::id()));
    Ok(path.with_file_name(tmp))
}

/// Persists the rename itself; best effort (not possible on all platforms).
fn sync_parent(path: &Path) {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_file_and_cleans_up_on_error() {
        let dir = std::env::temp_dir().join(format!("synthcal-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.bin");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let e = write_atomic_with(&p, |f| {
            f.write_all(b"partial")?;
            Err(io::Error::other("boom"))
        });
        assert!(e.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x.bin"], "temporary file left behind");
        assert!(write_atomic(dir.join("missing/dir/x"), b"").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temporary_names_are_unique() {
        let p = Path::new("/tmp/x.bin");
        let (a, b) = (tmp_path(p).unwrap(), tmp_path(p).unwrap());
        assert_ne!(a, b);
        let pid = std::process::id().to_string();
        assert!(a.to_string_lossy().contains(&pid), "{}", a.display());
    }

    #[cfg(unix)]
    #[test]
    fn never_replaces_a_link_folder_or_fifo() {
        let dir = std::env::temp_dir().join(format!("synthcal-atomic-kind-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sub")).unwrap();
        let target = dir.join("target");
        fs::write(&target, b"keep").unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = write_atomic(&link, b"new").unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&target).unwrap(), b"keep");
        assert!(write_atomic(dir.join("sub"), b"new").is_err());
        assert!(dir.join("sub").is_dir());
        let fifo = dir.join("fifo");
        let ok = std::process::Command::new("mkfifo").arg(&fifo).status();
        if ok.map(|s| s.success()).unwrap_or(false) {
            assert!(write_atomic(&fifo, b"new").is_err());
            assert!(!fs::symlink_metadata(&fifo).unwrap().is_file());
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
