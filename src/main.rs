//! The `wxlogin` binary: parse the command line, run it, turn the outcome into an exit
//! code and at most one line on stderr.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match wxlogin::cli::run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wxlogin: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
