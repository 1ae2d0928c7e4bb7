//! Load a saved INT8 model and classify a batch of images: what an app embedding synthcal
//! does at run time.
//!
//! ```text
//! synthcal quantize --model resnet20.pt --calib gan -o resnet20-int8.safetensors
//! cargo run --example embed_quantized -- resnet20-int8.safetensors a.png b.png ...
//! ```

use synthcal::{Gpu, Images, QuantizedModel, ResizePolicy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, images @ ..] = &args[..] else {
        return Err("usage: embed_quantized INT8_MODEL IMAGE...".into());
    };
    if images.is_empty() {
        return Err("usage: embed_quantized INT8_MODEL IMAGE...".into());
    }
    let gpu = Gpu::default_adapter()?;
    let int8 = QuantizedModel::load(model)?;
    let p = int8.provenance();
    println!(
        "{model}: {} quantized by synthcal {} with {}",
        int8.arch,
        p.version.as_deref().unwrap_or("?"),
        p.calibration
            .as_deref()
            .unwrap_or("an unrecorded calibration set")
    );
    let batch = Images::load(images, int8.input_size, ResizePolicy::Resize)?;
    let logits = int8.predict(&gpu, &batch)?;
    for (path, class) in images.iter().zip(logits.argmax()) {
        println!("{path}: {}", logits.class_names()[class]);
    }
    Ok(())
}
