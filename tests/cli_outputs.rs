//! The built binary's output safety: an output never replaces an input or a non-regular file
//! and is checked before the work; train-gan run folders are locked, resume to the right
//! target and verify their checkpoints; identical runs write identical bytes.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Tmp(PathBuf);
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn tmp(tag: &str) -> Tmp {
    let d = std::env::temp_dir().join(format!("synthcal-cli-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    Tmp(d)
}

fn synthcal(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synthcal"))
        .args(args.iter().map(|a| a.as_ref()))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// The command's stderr, after checking that it failed.
fn fails(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "expected a failure; stdout:\n{}\nstderr:\n{err}",
        String::from_utf8_lossy(&out.stdout)
    );
    err
}

fn succeeds(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

fn model(dir: &Path) -> PathBuf {
    let p = dir.join("model.safetensors");
    common::write_random_model("resnet20", 1, &p);
    p
}

/// A tiny CIFAR-named image folder (two random images per class).
fn image_folder(dir: &Path) -> PathBuf {
    let p = dir.join("images");
    let n = 20;
    let pixels: Vec<u8> = (0..n * 3072).map(|i| (i * 7 % 251) as u8).collect();
    let labels: Vec<u16> = (0..n).map(|i| (i % 10) as u16).collect();
    let names = synthcal::data::CIFAR10_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let ds = synthcal::data::Dataset::new(pixels, labels, names, "test").unwrap();
    synthcal::data::save_image_folder(&ds, &p).unwrap();
    p
}

#[test]
fn outputs_never_replace_inputs() {
    let t = tmp("inputs");
    let m = model(&t.0);
    let before = fs::read(&m).unwrap();
    // quantize -o onto its own --model.
    let e = fails(&synthcal(&[
        &"quantize",
        &"--model",
        &m,
        &"--calib",
        &"noise",
        &"--per-class",
        &"1",
        &"-o",
        &m,
    ]));
    assert!(e.contains("is the input"), "{e}");
    // import -o onto the checkpoint, and onto a hard link to it.
    let e = fails(&synthcal(&[&"import", &m, &"-o", &m]));
    assert!(e.contains("is the input"), "{e}");
    let hard = t.0.join("hard.safetensors");
    fs::hard_link(&m, &hard).unwrap();
    fails(&synthcal(&[&"import", &m, &"-o", &hard]));
    // eval --json onto the model.
    let images = image_folder(&t.0);
    let e = fails(&synthcal(&[
        &"eval", &"--model", &m, &"--data", &images, &"--json", &m,
    ]));
    assert!(e.contains("is the input"), "{e}");
    assert_eq!(fs::read(&m).unwrap(), before, "an input was modified");
    // generate -o into the generator's own folder.
    let e = fails(&synthcal(&[
        &"generate",
        &"--generator",
        &m,
        &"--per-class",
        &"1",
        &"-o",
        &t.0,
    ]));
    assert!(e.contains("holds the input"), "{e}");
}

#[cfg(unix)]
#[test]
fn outputs_never_replace_links_fifos_or_folders() {
    let t = tmp("kinds");
    let m = model(&t.0);
    let target = t.0.join("target");
    fs::write(&target, b"keep").unwrap();
    let link = t.0.join("link.safetensors");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let e = fails(&synthcal(&[&"import", &m, &"-o", &link]));
    assert!(
        e.contains("symbolic link") && e.contains("link.safetensors"),
        "{e}"
    );
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read(&target).unwrap(), b"keep");

    let fifo = t.0.join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo failed");
    let e = fails(&synthcal(&[&"import", &m, &"-o", &fifo]));
    assert!(e.contains("FIFO"), "{e}");
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());

    let e = fails(&synthcal(&[&"import", &m, &"-o", &t.0]));
    assert!(e.contains("a folder"), "{e}");
}

#[test]
fn json_into_a_missing_folder_fails_before_evaluating() {
    let t = tmp("nodir");
    let m = model(&t.0);
    let images = image_folder(&t.0);
    let json = t.0.join("nodir/x.json");
    let out = synthcal(&[
        &"eval", &"--model", &m, &"--data", &images, &"--json", &json,
    ]);
    let e = fails(&out);
    assert!(
        e.contains("nodir/x.json") && e.contains("does not exist"),
        "{e}"
    );
    assert!(
        out.stdout.is_empty(),
        "evaluated before failing: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn identical_runs_write_identical_bytes() {
    let t = tmp("repro");
    let m = model(&t.0);
    let (a, b) = (t.0.join("a.safetensors"), t.0.join("b.safetensors"));
    for out in [&a, &b] {
        succeeds(&synthcal(&[&"import", &m, &"-o", out]));
    }
    assert!(
        fs::read(&a).unwrap() == fs::read(&b).unwrap(),
        "import: outputs differ"
    );
    // The INT8 writer, with its many metadata fields.
    let (qa, qb) = (t.0.join("qa.safetensors"), t.0.join("qb.safetensors"));
    for out in [&qa, &qb] {
        succeeds(&synthcal(&[
            &"quantize",
            &"--model",
            &m,
            &"--calib",
            &"noise",
            &"--per-class",
            &"2",
            &"--seed",
            &"3",
            &"--quiet",
            &"-o",
            out,
        ]));
    }
    assert!(
        fs::read(&qa).unwrap() == fs::read(&qb).unwrap(),
        "quantize: outputs differ"
    );
}

/// A tiny train-gan run into `dir`, with `extra` arguments.
fn train(data: &Path, dir: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"train-gan",
        &"--data",
        &data,
        &"-o",
        &dir,
        &"--real-images",
        &"16",
        &"--ngf",
        &"8",
        &"--ndf",
        &"4",
        &"--z-dim",
        &"8",
        &"--batch",
        &"4",
        &"--sample-every",
        &"0",
        &"--quiet",
    ];
    args.extend(extra.iter().map(|s| s as &dyn AsRef<std::ffi::OsStr>));
    synthcal(&args)
}

#[test]
fn train_gan_folder_is_locked() {
    let t = tmp("lock");
    let run = t.0.join("run");
    fs::create_dir(&run).unwrap();
    // This process holds the run folder, as a running train-gan would.
    let lock = synthcal::io::DirLock::acquire(&run).unwrap();
    let e = fails(&train(Path::new("/nonexistent"), &run, &["--steps", "1"]));
    let pid = std::process::id().to_string();
    assert!(e.contains("in use") && e.contains(&pid), "{e}");
    assert!(e.contains(&*run.to_string_lossy()), "{e}");
    drop(lock);
}

#[test]
fn train_gan_resume_targets_and_checkpoint_integrity() {
    let Some(shared) = common::shared_with(&["data/cifar-10-batches-bin/data_batch_5.bin"]) else {
        return;
    };
    let data = shared.join("data/cifar-10-batches-bin");
    let t = tmp("resume");
    let run = t.0.join("run");
    let ckpt = run.join("checkpoint.safetensors");
    succeeds(&train(&data, &run, &["--steps", "1"]));
    assert!(!run.join(".lock").exists(), "lock file left behind");
    // A second fresh run into the folder is refused (the checkpoint exists).
    fails(&train(&data, &run, &["--steps", "1"]));
    // --resume --steps N: a new target, which must be above the current step.
    let e = fails(&train(&data, &run, &["--resume", "--steps", "1"]));
    assert!(e.contains("--steps 1") && e.contains("at step 1"), "{e}");
    let out = succeeds(&train(&data, &run, &["--resume", "--steps", "2"]));
    assert!(out.contains("resuming at step 1 of 2"), "{out}");
    // --resume alone continues to the run's own (now 2) target.
    let out = succeeds(&train(&data, &run, &["--resume"]));
    assert!(out.contains("resuming at step 2 of 2"), "{out}");

    // A flipped data byte is caught by the checksum.
    let good = fs::read(&ckpt).unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 5;
    bad[last] ^= 0x40;
    fs::write(&ckpt, &bad).unwrap();
    let e = fails(&train(&data, &run, &["--resume"]));
    assert!(
        e.contains("checksum") && e.contains("checkpoint.safetensors"),
        "{e}"
    );

    // A step counter past the target is refused even with a matching checksum.
    fs::write(&ckpt, &good).unwrap();
    let (tensors, mut meta) = synthcal::io::read_safetensors(&ckpt).unwrap();
    meta.insert("step".into(), u64::MAX.to_string());
    let arrays: Vec<(String, synthcal::array::Array)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), synthcal::array::Array::new(&t.shape, t.to_f32())))
        .collect();
    let sum = synthcal::gan::train::checksum(&arrays, &meta);
    meta.insert(synthcal::gan::train::CHECKSUM_KEY.into(), sum);
    synthcal::io::write_tensor_data(&ckpt, &tensors, &meta).unwrap();
    let e = fails(&train(&data, &run, &["--resume"]));
    assert!(e.contains("past the run's target"), "{e}");
}

/// `eval --fp32 / --vs` load before the first evaluation: a bad file fails before any result.
#[test]
fn eval_reference_models_load_before_evaluating() {
    let t = tmp("evalrefs");
    let m = model(&t.0);
    let images = image_folder(&t.0);
    let bad = t.0.join("bad.safetensors");
    fs::write(&bad, b"not a model").unwrap();
    for flag in ["--fp32", "--vs"] {
        let out = synthcal(&[
            &"eval", &"--model", &m, &"--data", &images, &flag, &bad, &"--quiet",
        ]);
        let e = fails(&out);
        assert!(e.contains("bad.safetensors"), "{flag}: {e}");
        assert!(
            out.stdout.is_empty(),
            "{flag}: evaluated before failing: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn two_outputs_of_one_command_are_not_the_same_file() {
    let d = tmp("twoout");
    let m = model(&d.0);
    let same = d.0.join("out.json");
    let err = fails(&synthcal(&[
        &"diagnose",
        &"--model",
        &m,
        &"--int8",
        &m,
        &"--data",
        &d.0,
        &"--json",
        &same,
        &"--plot",
        &same,
    ]));
    assert!(err.contains("same file"), "{err}");
    assert!(!same.exists());
}
