pub mod gpu;
pub mod io;
