pub mod data;
pub mod gpu;
