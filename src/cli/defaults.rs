//! Where the command line looks for what a user did not name: the shared data folder, the
//! CIFAR-10 binaries, the published checkpoints by short name, the committed generator.

use std::path::{Path, PathBuf};

/// `$SYNTHCAL_SHARED`, else `../shared`.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("SYNTHCAL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared"))
}

/// The CIFAR-10 binary folder: $SYNTHCAL_DATA, else data/cifar-10-batches-bin under the
/// shared folder.
pub fn default_data() -> PathBuf {
    std::env::var_os("SYNTHCAL_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| shared_dir().join("data/cifar-10-batches-bin"))
}

/// The generator committed with synthcal (trained by the README's CPU-scale recipe).
pub fn default_generator() -> PathBuf {
    let rel = PathBuf::from("assets/distylegan-cifar10.safetensors");
    if rel.exists() {
        rel
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
    }
}

/// The published checkpoints' short names and their files under the shared folder's `models`.
const NAMED: [(&str, &str); 5] = [
    ("akamaster_resnet20", "akamaster/resnet20-12fca82f.th"),
    ("akamaster_resnet56", "akamaster/resnet56-4bfd9763.th"),
    ("resnet20", "chenyaofo/cifar10_resnet20-4118986f.pt"),
    ("resnet56", "chenyaofo/cifar10_resnet56-187c023a.pt"),
    (
        "shufflenetv2_x0_5",
        "chenyaofo/cifar10_shufflenetv2_x0_5-1308b4e9.pt",
    ),
];

/// A model name's checkpoint under the shared folder, or the path itself.
pub fn model_path(name: &str) -> PathBuf {
    match NAMED.iter().find(|(n, _)| *n == name) {
        Some((_, file)) => shared_dir().join("models").join(file),
        None => PathBuf::from(name),
    }
}

/// Refuses `--model` paths that do not exist, before any work: a published model's checkpoint
/// with where to get it, anything else as neither a file nor a short name (likely a typo).
pub fn check_models<'a>(paths: impl IntoIterator<Item = &'a Path>) -> crate::Result<()> {
    for path in paths {
        if path.exists() {
            continue;
        }
        if NAMED.iter().any(|(n, _)| model_path(n) == path) {
            return Err(missing("model", path));
        }
        let names: Vec<&str> = NAMED.iter().map(|(n, _)| *n).collect();
        return Err(crate::Error::File {
            path: path.to_path_buf(),
            msg: format!(
                "no such file, nor a published model's short name ({})",
                names.join(", ")
            ),
        });
    }
    Ok(())
}

/// `--model`'s parser: an existing file as it is, else a published checkpoint's short name
/// (`model_path`), else the path (whose absence the command then reports).
pub fn model_arg(arg: &str) -> Result<PathBuf, String> {
    if Path::new(arg).exists() {
        Ok(PathBuf::from(arg))
    } else {
        Ok(model_path(arg))
    }
}

/// The error for missing data or checkpoints, with where to get them.
pub fn missing(what: &str, path: &Path) -> crate::Error {
    crate::Error::Invalid(format!(
        "{what} not found at {}. Download CIFAR-10 (binary version) and the published checkpoints \
         with tools/fetch-data.sh (on a machine with internet), or point --data / SYNTHCAL_DATA \
         and SYNTHCAL_SHARED at them",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_model_names_the_short_names_or_where_to_get_it() {
        let typo = check_models([Path::new("akamaster_resnet2")]).unwrap_err();
        let msg = typo.to_string();
        assert!(msg.contains("akamaster_resnet2:") && msg.contains("akamaster_resnet20,"));
        let named = model_path("resnet56");
        if !named.exists() {
            let msg = check_models([named.as_path()]).unwrap_err().to_string();
            assert!(msg.contains("tools/fetch-data.sh"), "{msg}");
        }
        assert!(check_models([Path::new("Cargo.toml")]).is_ok());
    }

    #[test]
    fn model_names_resolve_unless_a_file_has_that_name() {
        let named = model_arg("shufflenetv2_x0_5").unwrap();
        assert!(named.ends_with("models/chenyaofo/cifar10_shufflenetv2_x0_5-1308b4e9.pt"));
        let file = std::env::temp_dir().join(format!("resnet20-{}", std::process::id()));
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(model_arg(file.to_str().unwrap()).unwrap(), file);
        std::fs::remove_file(&file).unwrap();
        assert_eq!(
            model_arg("no/such.pt").unwrap(),
            PathBuf::from("no/such.pt")
        );
    }
}
