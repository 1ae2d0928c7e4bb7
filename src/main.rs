//! The `synthcal` binary: the command line lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    match synthcal::cli::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", synthcal::cli::error_text(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
