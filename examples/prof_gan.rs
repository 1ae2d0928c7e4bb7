use std::time::Instant;
use synthcal::gpu::Gpu;
use synthcal::ops::conv2d::Conv2dParams;
use synthcal::ops::conv2d_grad::*;
use synthcal::cpu::Array;

fn main() {
    let g = Gpu::default_adapter().unwrap();
    let b = 64;
    // (x shape, w shape, stride, pad)
    let cases = [
        ([b, 64, 8, 8], [64, 64, 3, 3], 1, 1),
        ([b, 32, 16, 16], [32, 32, 3, 3], 1, 1),
        ([b, 16, 32, 32], [16, 16, 3, 3], 1, 1),
        ([b, 8, 32, 32], [3, 8, 3, 3], 1, 1),
        ([b, 3, 32, 32], [32, 3, 4, 4], 2, 1),
        ([b, 32, 16, 16], [32, 32, 4, 4], 2, 1),
        ([b, 32, 8, 8], [64, 32, 4, 4], 2, 1),
        ([b, 64, 4, 4], [128, 64, 4, 4], 2, 1),
    ];
    for (xs, ws, st, pd) in cases {
        let x = g.upload_f32(&xs, &Array::random(&xs, 1).data).unwrap();
        let w = g.upload_f32(&ws, &Array::random(&ws, 2).data).unwrap();
        let p = Conv2dParams::new(st, pd, 1);
        let mut s = g.stream();
        let y = conv2d_train(&mut s, &x, &w, None, &p).unwrap();
        s.submit(); g.wait().unwrap();
        let ys: [usize;4] = y.dims("y").unwrap();
        let flops = 2.0 * (ys.iter().product::<usize>() * ws[1] * ws[2] * ws[3]) as f64;
        let time = |f: &dyn Fn(&mut synthcal::gpu::Stream)| {
            let mut s = g.stream(); f(&mut s); s.submit(); g.wait().unwrap();
            let t = Instant::now();
            for _ in 0..5 { let mut s = g.stream(); f(&mut s); s.submit(); g.wait().unwrap(); }
            t.elapsed().as_secs_f64() / 5.0
        };
        let tf = time(&|s| { conv2d_train(s, &x, &w, None, &p).unwrap(); });
        let td = time(&|s| { conv2d_backward_data(s, &y, &w, xs, &p).unwrap(); });
        let tw = time(&|s| { conv2d_backward_weight(s, &x, &y, ws, &p).unwrap(); });
        println!("{xs:?} {ws:?} s{st}: fwd {:.1} ms ({:.1} GF/s) dx {:.1} ms ({:.1}) dw {:.1} ms ({:.1})",
            tf*1e3, flops/tf/1e9, td*1e3, flops/td/1e9, tw*1e3, flops/tw/1e9);
    }
}
