//! CPU reference implementations: plain, obviously-correct loops that every WGSL kernel is
//! tested against (and that `graph` can run whole models with, for cross-checks).

pub mod batchnorm;
pub mod conv;
pub mod elementwise;
pub mod embed;
pub mod glu;
pub mod layout;
pub mod lrn;
pub mod matmul;
pub mod pad2d;
pub mod pool;
pub mod qconv;
pub mod qlayout;
pub mod softmax;
