use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = csm::cli::Cli::parse();
    match csm::run(cli) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(err) => {
            csm::output::print_error(&err);
            ExitCode::from(err.exit().code())
        }
    }
}
