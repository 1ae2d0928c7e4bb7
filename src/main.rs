//! The `synthcal` binary: the command line lives in the library's `cli` module.

fn main() -> anyhow::Result<()> {
    synthcal::cli::main()
}
