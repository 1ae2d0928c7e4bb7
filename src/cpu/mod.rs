//! CPU reference implementations: plain, obviously-correct loops that every WGSL kernel is
//! tested against (and that `graph` can run whole models with, for cross-checks).

mod array;
pub mod elementwise;
pub mod qconv;

pub use array::Array;
