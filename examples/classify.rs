//! Quantize a CIFAR-10 checkpoint with GAN images and classify a PNG with the INT8 model.
//!
//! ```text
//! cargo run --example classify -- CHECKPOINT IMAGE.png [GENERATOR]
//! ```
//!
//! CHECKPOINT: a `.th`/`.pt` PyTorch checkpoint or a `.safetensors` file of a zoo
//! architecture. GENERATOR: a DiStyleGAN generator (default: the one committed with
//! synthcal). The image is resized to the model's input size if it differs.

use synthcal::{quantize, CalibSource, Gpu, Images, Model, QuantOptions, ResizePolicy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [checkpoint, image, rest @ ..] = &args[..] else {
        return Err("usage: classify CHECKPOINT IMAGE.png [GENERATOR]".into());
    };
    let generator = match rest.first() {
        Some(g) => g.into(),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets/distylegan-cifar10.safetensors"),
    };
    let gpu = Gpu::default_adapter()?;
    let model = Model::load(checkpoint)?;
    // 50 GAN images per class: enough for INT8 ranges (see the README's calibration table).
    let source = CalibSource::Gan {
        generator,
        per_class: 50,
        seed: 0,
    };
    let int8 = quantize(&gpu, &model, &source, &QuantOptions::default())?;
    let images = Images::load(&[image], model.input_size(), ResizePolicy::Resize)?;
    let logits = int8.predict(&gpu, &images)?;
    println!(
        "{image} ({}, INT8, calibrated on GAN images):",
        model.arch.name
    );
    for (class, p) in logits.top_k(0, 3) {
        println!("  {class:<12} {:5.1}%", 100.0 * p);
    }
    Ok(())
}
