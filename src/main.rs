use clap::Parser;
use std::process::ExitCode;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    csm::config::unset_empty_env();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match csm::cli::Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and --version go to stdout and are no refusal.
            if e.use_stderr() {
                csm::refused_args(&e, &args);
            }
            e.exit()
        }
    };
    // Also when the command refuses --json: the caller asked for a JSON answer.
    let json = cli.global.json;
    match csm::run(cli) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(err) => {
            csm::output::print_error(&err);
            if json {
                csm::output::print_json_error(&err);
            }
            ExitCode::from(err.exit().code())
        }
    }
}
