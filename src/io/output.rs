//! Output-path checks that every writing command runs before its long work: an output never
//! replaces one of the command's inputs, nor anything that is not a regular file (a device, a
//! FIFO, a symbolic link, a folder), and its folder must exist and be writable.

use std::fs::{self, OpenOptions};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Error, Result};

/// Checks an output file `out` of a command that reads `inputs` (files or folders; missing
/// ones are skipped, their loaders report them). Refuses `out` when it is an input (same
/// canonical path, or on unix the same device and inode, so hard links count), when it is an
/// existing file inside an input folder, when it exists and is not a regular file, and when
/// its folder is missing or not writable.
pub fn check_output_file(out: &Path, inputs: &[&Path]) -> Result<()> {
    if let Some(kind) = non_regular(out)? {
        return Err(refuse(
            out,
            format!("is {kind}; refusing to replace it (choose a regular file path)"),
        ));
    }
    check_writable_dir(out, &parent(out))?;
    let exists = fs::symlink_metadata(out).is_ok();
    let out_c = resolve(out);
    for &input in inputs {
        let Ok(meta) = fs::metadata(input) else {
            continue;
        };
        let in_c = resolve(input);
        if exists && (out_c == in_c || same_inode(out, input)) {
            return Err(refuse(
                out,
                format!("is the input {}; refusing to overwrite it", input.display()),
            ));
        }
        if exists && meta.is_dir() && out_c.starts_with(&in_c) {
            return Err(refuse(
                out,
                format!(
                    "exists inside the input folder {}; refusing to overwrite a file there",
                    input.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks an output folder `out` (created by the command when missing) of a command that
/// reads `inputs`: `out` must be a folder if it exists, it or its nearest existing ancestor
/// must be writable, and it may neither be an input, nor lie inside an input folder, nor hold
/// an input (so no input file can be overwritten, and no input folder gains files).
pub fn check_output_dir(out: &Path, inputs: &[&Path]) -> Result<()> {
    match fs::metadata(out) {
        Ok(m) if !m.is_dir() => {
            return Err(refuse(out, "exists and is not a folder".into()));
        }
        Ok(_) => check_writable_dir(out, out)?,
        Err(_) => {
            let ancestor = existing_ancestor(out);
            if !ancestor.is_dir() {
                return Err(refuse(
                    out,
                    format!("{} is not a folder", ancestor.display()),
                ));
            }
            check_writable_dir(out, &ancestor)?;
        }
    }
    let out_c = resolve(out);
    for &input in inputs {
        let Ok(meta) = fs::metadata(input) else {
            continue;
        };
        let in_c = resolve(input);
        let msg = if out_c == in_c || same_inode(out, input) {
            "is the input"
        } else if in_c.starts_with(&out_c) {
            "holds the input"
        } else if meta.is_dir() && out_c.starts_with(&in_c) {
            "is inside the input folder"
        } else {
            continue;
        };
        return Err(refuse(
            out,
            format!(
                "output folder {msg} {}; choose another folder",
                input.display()
            ),
        ));
    }
    Ok(())
}

/// Checks that the output folder `out` is missing or empty (for commands that write a whole
/// dataset folder and refuse to mix it with other files), before their work starts.
pub fn check_new_or_empty(out: &Path) -> Result<()> {
    let empty = fs::read_dir(out).map_or(true, |mut entries| entries.next().is_none());
    if empty {
        Ok(())
    } else {
        Err(refuse(
            out,
            "output folder is not empty; choose a new or empty folder".into(),
        ))
    }
}

fn refuse(out: &Path, msg: String) -> Error {
    Error::format(out, msg)
}

/// What `path` is when it exists and is not a regular file (a symbolic link counts, even to a
/// regular file: replacing it would replace the link, not its target).
pub(crate) fn non_regular(path: &Path) -> Result<Option<&'static str>> {
    let ft = match fs::symlink_metadata(path) {
        Ok(m) => m.file_type(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    if ft.is_file() {
        return Ok(None);
    }
    let kind = if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_dir() {
        "a folder"
    } else {
        special_kind(&ft)
    };
    Ok(Some(kind))
}

#[cfg(unix)]
fn special_kind(ft: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(not(unix))]
fn special_kind(_: &fs::FileType) -> &'static str {
    "not a regular file"
}

#[cfg(unix)]
fn same_inode(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_inode(_: &Path, _: &Path) -> bool {
    false
}

/// The folder a file path lives in (`.` for a bare name).
fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The nearest ancestor of `path` (itself included) that exists.
fn existing_ancestor(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    while fs::symlink_metadata(&p).is_err() {
        p = parent(&p);
        if p == Path::new(".") {
            break;
        }
    }
    p
}

/// An absolute, symlink-free form of `path` even when it does not exist yet: the canonical
/// nearest existing ancestor plus the remaining components (`..` applied lexically).
fn resolve(path: &Path) -> PathBuf {
    if let Ok(c) = fs::canonicalize(path) {
        return c;
    }
    let base = existing_ancestor(path);
    let rest = path.strip_prefix(&base).unwrap_or(path);
    let mut out = fs::canonicalize(&base).unwrap_or(base);
    for c in rest.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Proves `dir` writable by creating (and removing) a probe file in it: unlike permission
/// bits, this also catches read-only mounts. Errors name `out`, the output being checked.
fn check_writable_dir(out: &Path, dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(refuse(out, format!("{} is not a folder", dir.display()))),
        Err(_) => {
            return Err(refuse(
                out,
                format!("output folder {} does not exist", dir.display()),
            ))
        }
    }
    static PROBES: AtomicU64 = AtomicU64::new(0);
    let n = PROBES.fetch_add(1, Ordering::Relaxed);
    let probe = dir.join(format!(".synthcal-probe-{}-{n}", std::process::id()));
    match OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(refuse(
            out,
            format!("output folder {} is not writable: {e}", dir.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    fn tmp(tag: &str) -> Tmp {
        let d = std::env::temp_dir().join(format!("synthcal-out-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        Tmp(d)
    }

    fn err(r: Result<()>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn output_file_never_replaces_an_input() {
        let t = tmp("same");
        let input = t.0.join("model.safetensors");
        fs::write(&input, b"model").unwrap();
        let e = err(check_output_file(&input, &[&input]));
        assert!(e.contains("is the input"), "{e}");
        // The same file by another spelling, and by a hard link.
        let other = t.0.join("sub/../model.safetensors");
        fs::create_dir(t.0.join("sub")).unwrap();
        assert!(check_output_file(&other, &[&input]).is_err());
        let link = t.0.join("hard.safetensors");
        fs::hard_link(&input, &link).unwrap();
        assert!(check_output_file(&link, &[&input]).is_err());
        // A fresh name, or a missing input, is fine.
        let fresh = t.0.join("out.safetensors");
        check_output_file(&fresh, &[&input]).unwrap();
        check_output_file(&fresh, &[&t.0.join("missing")]).unwrap();
        // An existing file inside an input folder is refused; a new one is fine.
        let e = err(check_output_file(&input, &[&t.0]));
        assert!(e.contains("inside the input folder"), "{e}");
        check_output_file(&fresh, &[&t.0]).unwrap();
        assert_eq!(fs::read(&input).unwrap(), b"model");
    }

    #[cfg(unix)]
    #[test]
    fn output_file_must_be_regular_and_its_folder_writable() {
        let t = tmp("kind");
        let target = t.0.join("target");
        fs::write(&target, b"keep").unwrap();
        let link = t.0.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = err(check_output_file(&link, &[]));
        assert!(e.contains("symbolic link") && e.contains("link"), "{e}");
        let e = err(check_output_file(&t.0, &[]));
        assert!(e.contains("a folder"), "{e}");
        let e = err(check_output_file(Path::new("/dev/null"), &[]));
        assert!(e.contains("a device"), "{e}");
        let missing = t.0.join("nodir/x.json");
        let e = err(check_output_file(&missing, &[]));
        assert!(
            e.contains("nodir/x.json") && e.contains("does not exist"),
            "{e}"
        );
        check_output_file(&t.0.join("x.json"), &[]).unwrap();
        // No probe file is left behind.
        let left: Vec<_> = fs::read_dir(&t.0).unwrap().collect();
        assert_eq!(left.len(), 2);
    }

    #[test]
    fn output_folder_is_separate_from_inputs() {
        let t = tmp("dir");
        let data = t.0.join("data");
        fs::create_dir(&data).unwrap();
        let model = t.0.join("m.safetensors");
        fs::write(&model, b"m").unwrap();
        let e = err(check_output_dir(&data, &[&data]));
        assert!(e.contains("is the input"), "{e}");
        let e = err(check_output_dir(&data.join("new"), &[&data]));
        assert!(e.contains("inside the input folder"), "{e}");
        let e = err(check_output_dir(&t.0, &[&model]));
        assert!(e.contains("holds the input"), "{e}");
        let e = err(check_output_dir(&model, &[]));
        assert!(e.contains("not a folder"), "{e}");
        check_output_dir(&t.0.join("a/b/c"), &[&data, &model]).unwrap();
        check_new_or_empty(&data).unwrap();
        check_new_or_empty(&t.0.join("a")).unwrap();
        let e = err(check_new_or_empty(&t.0));
        assert!(e.contains("not empty"), "{e}");
        assert!(!t.0.join("a").exists());
    }
}
