//! DiStyleGAN: sizes, determinism, checkpoint/resume, teacher sets, failure handling.

mod common;

use common::gpu;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use synthcal::data::Dataset;
use synthcal::gan::generate::{generate, save_generated};
use synthcal::gan::train::{load_teacher, run, TrainOptions, Trainer};
use synthcal::gan::{load_generator, save_generator, Discriminator, GanConfig, Generator};

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("synthcal-gan-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Random "real" images: enough for a few tiny steps without the shared data.
fn fake_real(n: usize) -> Dataset {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let pixels: Vec<u8> = (0..n * 3072).map(|_| rng.random()).collect();
    let labels: Vec<u16> = (0..n).map(|i| (i % 10) as u16).collect();
    let names = synthcal::data::CIFAR10_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    Dataset::new(pixels, labels, names, "random").unwrap()
}

/// Saves `tr` into `dir` and resumes it from there (with the same fake real images).
fn save_and_resume(tr: &Trainer, dir: &std::path::Path) -> Trainer {
    std::fs::create_dir_all(dir).unwrap();
    tr.save(dir).unwrap();
    let ckpt = dir.join("checkpoint.safetensors");
    Trainer::resume(gpu(), &ckpt, |_| Ok(fake_real(40)), None).unwrap()
}

fn tiny(teacher: Option<PathBuf>) -> TrainOptions {
    let mut o = TrainOptions::faithful(teacher);
    o.config.ngf = 16;
    o.config.ndf = 8;
    o.config.z_dim = 32;
    o.batch = 8;
    o.steps = 3;
    o
}

#[test]
fn faithful_widths_match_the_reference_sizes() {
    common::skip_without_gpu!();
    let g = gpu();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let cfg = GanConfig::default();
    // Linear 512x256, BN 256, Linear 138x8192, BN 8192, convs 256/128/64 (x2 out), BNs, 32->3.
    assert_eq!(
        Generator::new(&g, cfg, &mut rng).unwrap().params.count(),
        2_054_368
    );
    // Four SN conv4x4 blocks with bias, SN Linear 2048->256, Linear 138->1.
    assert_eq!(
        Discriminator::new(&g, cfg, &mut rng)
            .unwrap()
            .params
            .count(),
        3_415_178
    );
}

#[test]
fn same_seed_same_run_and_resume_matches() {
    common::skip_without_gpu!();
    let g = gpu();
    let dir = tmp("resume");
    let mut a = Trainer::new(g.clone(), tiny(None), fake_real(40), None).unwrap();
    let la: Vec<_> = (0..3).map(|_| a.step().unwrap()).collect();
    let mut b = Trainer::new(g.clone(), tiny(None), fake_real(40), None).unwrap();
    let lb: Vec<_> = (0..2).map(|_| b.step().unwrap()).collect();
    assert_eq!(la[0].d, lb[0].d);
    assert_eq!(la[1].g, lb[1].g);
    assert!(la.iter().all(|l| l.d.is_finite() && l.g.is_finite()));
    // Save after 2 steps, resume, take the third: identical to the uninterrupted run.
    let mut c = save_and_resume(&b, &dir);
    assert_eq!(c.step, 2);
    let lc = c.step().unwrap();
    assert_eq!((lc.d, lc.g), (la[2].d, la[2].g));
    let (wa, wc) = (a.g.read(&g).unwrap(), c.g.read(&g).unwrap());
    assert_eq!(wa, wc);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn auxiliary_classifier_trains_and_resumes() {
    common::skip_without_gpu!();
    let g = gpu();
    let dir = tmp("aux");
    let mut o = tiny(None);
    o.config.aux_classifier = true;
    o.cls_d = 0.2;
    o.cls_g = 0.002;
    let mut plain = Trainer::new(g.clone(), tiny(None), fake_real(40), None).unwrap();
    let lp = plain.step().unwrap();
    let mut a = Trainer::new(g.clone(), o.clone(), fake_real(40), None).unwrap();
    let la: Vec<_> = (0..2).map(|_| a.step().unwrap()).collect();
    assert!(la.iter().all(|l| l.d.is_finite() && l.g.is_finite()));
    // The cross-entropy terms (about ln 10 each at the start) add to both losses.
    assert!(la[0].d > lp.d && la[0].g > lp.g, "{:?} vs {lp:?}", la[0]);
    assert!(a
        .d
        .read(&g)
        .unwrap()
        .iter()
        .any(|(n, t)| n == "aux.weight" && t.shape == [10, 128]));
    let mut b = save_and_resume(&a, &dir);
    assert_eq!(b.opts, o);
    assert!(b.step().unwrap().d.is_finite());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn classifier_guide_joins_g_loss_trains_and_resumes() {
    common::skip_without_gpu!();
    let g = gpu();
    let dir = tmp("guide");
    std::fs::create_dir_all(&dir).unwrap();
    let weights = dir.join("guide.safetensors");
    common::write_random_model("akamaster_resnet20", 6, &weights);
    let mut o = tiny(None);
    o.batch = 16;
    o.adam_g.lr = 2e-3;
    let mut plain = Trainer::new(g.clone(), o.clone(), fake_real(40), None).unwrap();
    let lp = plain.step().unwrap();
    o.guide = Some(weights.display().to_string());
    o.guide_weight = 1.0;
    o.guide_bn_stats = 1e-3;
    o.guide_jitter = 1;
    let mut tr = Trainer::new(g.clone(), o.clone(), fake_real(40), None).unwrap();
    let losses: Vec<f32> = (0..30).map(|_| tr.step().unwrap().g).collect();
    // Same seed, same first D step and adversarial term: G's loss gains the cross-entropy
    // (about ln 10 for a random classifier).
    let ce0 = losses[0] - lp.g;
    assert!((1.0..8.0).contains(&ce0), "first guide term {ce0}");
    // The guide term is 500x the adversarial one here, so G's loss is nearly all
    // cross-entropy, and G learns to make images the classifier takes for their class.
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    let (early, late) = (mean(&losses[..5]), mean(&losses[20..]));
    assert!(late < 0.85 * early, "G loss {early} -> {late}");
    let mut b = save_and_resume(&tr, &dir);
    assert_eq!(b.opts, o);
    assert!(b.step().unwrap().g.is_finite());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn class_shifts_start_neutral_train_and_round_trip() {
    common::skip_without_gpu!();
    let g = gpu();
    let dir = tmp("shift");
    let mut o = tiny(None);
    o.config.class_shift = true;
    let mut plain_cfg = o.config;
    plain_cfg.class_shift = false;
    // At initialization the shifts are zero: the same images as without them.
    let mut tr = Trainer::new(g.clone(), o.clone(), fake_real(40), None).unwrap();
    let params = tr.g.read(&g).unwrap();
    let (shifts, rest): (Vec<_>, Vec<_>) =
        params.into_iter().partition(|(n, _)| n.contains(".shift."));
    assert_eq!(shifts.len(), 3);
    assert_eq!(shifts[0].1.shape, [16, 10]);
    assert!(shifts.iter().all(|(_, a)| a.data.iter().all(|&v| v == 0.0)));
    let (stats, weights): (Vec<_>, Vec<_>) =
        rest.into_iter().partition(|(n, _)| n.contains(".running_"));
    let plain = Generator::from_params(&g, plain_cfg, &weights, &stats).unwrap();
    let (a, _) = generate(&g, &tr.g, 2, 4, None, &Default::default()).unwrap();
    let (b, _) = generate(&g, &plain, 2, 4, None, &Default::default()).unwrap();
    assert_eq!(a.pixels(), b.pixels());
    // Training moves them, per class, and the generator file keeps them.
    for _ in 0..2 {
        let l = tr.step().unwrap();
        eprintln!("G {}", l.g);
        assert!(l.g.is_finite());
    }
    let trained = tr.g.read(&g).unwrap();
    let s0 = &trained
        .iter()
        .find(|(n, _)| n == "up0.shift.weight")
        .unwrap()
        .1;
    assert!(s0.data.iter().any(|&v| v != 0.0));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("g.safetensors");
    save_generator(&g, &tr.g, &serde_json::json!({}), 2, &file).unwrap();
    let (back, _) = load_generator(&g, &file).unwrap();
    assert!(back.cfg.class_shift);
    let (c, _) = generate(&g, &tr.g, 2, 4, None, &Default::default()).unwrap();
    let (d, _) = generate(&g, &back, 2, 4, None, &Default::default()).unwrap();
    assert_eq!(c.pixels(), d.pixels());
    assert_ne!(a.pixels(), c.pixels());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn generator_file_round_trip_and_teacher_set() {
    common::skip_without_gpu!();
    let g = gpu();
    let dir = tmp("teacher");
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let cfg = tiny(None).config;
    let gen = Generator::new(&g, cfg, &mut rng).unwrap();
    let file = dir.join("g.safetensors");
    std::fs::create_dir_all(&dir).unwrap();
    save_generator(&g, &gen, &serde_json::json!({"test": true}), 7, &file).unwrap();
    let (back, recipe) = load_generator(&g, &file).unwrap();
    assert_eq!(recipe["test"], true);
    let (d1, n1) = generate(&g, &gen, 3, 11, None, &Default::default()).unwrap();
    let (d2, n2) = generate(&g, &back, 3, 11, None, &Default::default()).unwrap();
    assert_eq!(d1.pixels(), d2.pixels());
    assert_eq!(n1, n2);
    assert_eq!(d1.class_counts(), vec![3; 10]);
    let (_, nt) = generate(&g, &gen, 3, 11, Some(0.5), &Default::default()).unwrap();
    assert!(nt.iter().all(|z| z.abs() <= 0.5));
    assert!(generate(&g, &gen, 3, 11, Some(0.0), &Default::default()).is_err());
    // A generated set is a teacher set for distillation.
    let tdir = dir.join("teacher");
    save_generated(&d1, &n1, cfg.z_dim, &tdir).unwrap();
    let t = load_teacher(&tdir).unwrap();
    assert_eq!((t.images.len(), t.z_dim), (30, cfg.z_dim));
    assert_eq!(t.noise, n1);
    let mut opts = tiny(Some(tdir.clone()));
    opts.adv_every = 2;
    let mut tr = Trainer::new(g.clone(), opts, fake_real(40), Some(t)).unwrap();
    for _ in 0..2 {
        let l = tr.step().unwrap();
        assert!(l.d.is_finite() && l.g.is_finite() && l.g > 0.0, "{l:?}");
    }
    // Labels that disagree with the folders are refused.
    std::fs::remove_file(tdir.join("noise.safetensors")).unwrap();
    let bad: Vec<f32> = n1.clone();
    let labels: Vec<i32> = vec![0; 30];
    synthcal::io::write_safetensors_typed(
        tdir.join("noise.safetensors"),
        &[
            (
                "noise",
                &[30, cfg.z_dim][..],
                synthcal::io::TensorSlice::F32(&bad),
            ),
            ("labels", &[30][..], synthcal::io::TensorSlice::I32(&labels)),
        ],
        &Default::default(),
    )
    .unwrap();
    let e = load_teacher(&tdir)
        .err()
        .expect("mismatched labels must be refused")
        .to_string();
    assert!(e.contains("labels"), "{e}");
    // Not a generator file.
    let e = load_generator(&g, &tdir.join("noise.safetensors"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a synthcal-distylegan-generator-v1"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn non_finite_loss_stops_and_keeps_the_last_checkpoint() {
    common::skip_without_gpu!();
    let g = gpu();
    let dir = tmp("nan");
    let mut opts = tiny(None);
    opts.steps = 2;
    let mut tr = Trainer::new(g.clone(), opts.clone(), fake_real(40), None).unwrap();
    run(&mut tr, &dir, 0, 0, &Default::default()).unwrap();
    let ckpt = dir.join("checkpoint.safetensors");
    let before = std::fs::read(&ckpt).unwrap();
    // An absurd learning rate overflows the weights within a few steps.
    let mut tr = Trainer::resume(g.clone(), &ckpt, |_| Ok(fake_real(40)), None).unwrap();
    tr.opts.steps = 20;
    tr.opts.adam_d.lr = 1e38;
    tr.opts.adam_g.lr = 1e38;
    let e = run(&mut tr, &dir, 1000, 0, &Default::default())
        .expect_err("must stop")
        .to_string();
    assert!(e.contains("non-finite"), "{e}");
    assert_eq!(
        std::fs::read(&ckpt).unwrap(),
        before,
        "checkpoint must stay as it was"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_configs_are_refused() {
    common::skip_without_gpu!();
    let g = gpu();
    let mut o = tiny(None);
    o.config.ngf = 12;
    assert!(Trainer::new(g.clone(), o, fake_real(20), None).is_err());
    let mut o = tiny(None);
    o.batch = 1;
    assert!(Trainer::new(g, o, fake_real(20), None).is_err());
}

#[test]
fn committed_generator_loads_and_generates() {
    common::skip_without_gpu!();
    let g = gpu();
    let default = synthcal::cli::defaults::default_generator();
    let unguided = default.with_file_name("distylegan-cifar10-unguided.safetensors");
    for path in [default, unguided] {
        let (gen, recipe) = load_generator(&g, &path).unwrap_or_else(|e| panic!("{e}"));
        // Its recipe travels with it.
        assert_eq!(recipe["config"]["ngf"], gen.cfg.ngf);
        assert!(recipe["steps"].as_u64().unwrap() > 0);
        let (ds, noise) = generate(&g, &gen, 2, 0, None, &Default::default()).unwrap();
        assert_eq!(ds.class_counts(), vec![2; 10]);
        assert_eq!(noise.len(), 20 * gen.cfg.z_dim);
        // Not constant images.
        let px = ds.pixels();
        assert!(px.iter().any(|&p| p != px[0]));
    }
}
