//! csm: the KooGallery seller toolkit.
//!
//! Pure protocol code lives in [`protocol`] (no I/O, no clock, no printing); the
//! subcommands in [`commands`] glue it to files, the network and the terminal.

pub mod catalog;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod duration;
pub mod endpoint;
pub mod error;
pub mod files;
pub mod interrupt;
pub mod license;
pub mod load;
pub mod marketplace;
pub mod merchant;
pub mod net;
pub mod output;
pub mod protocol;
pub mod secret;
pub mod server;
pub mod usage;

use cli::{Cli, Command};
use error::{Exit, Result};

/// Why a command has nothing to say in JSON (it refuses `--json`), or None.
fn no_json(command: &Command) -> Option<&'static str> {
    match command {
        Command::Completions(_) => Some("completions prints a shell script"),
        Command::Man(_) => Some("man writes manual pages"),
        Command::Init(_) => {
            Some("init asks questions and writes a profile (see `csm --json profile show`)")
        }
        _ => None,
    }
}

/// The command line refused before any command ran (an unknown flag, a bad value): the
/// reports a CI job reads are written all the same, so that none is left from an earlier
/// run: the JSON error object with `--json`, and test-endpoint's `--junit` file.
pub fn refused_args(e: &clap::Error, args: &[std::ffi::OsString]) {
    // Read from the words of the line: the parser stops at the refusal, and these flags may
    // come after it. A value that starts with `-` is taken for the next flag, not a path.
    let words: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // The message's first paragraph on one line: "the following required arguments were
    // not provided:" is followed by the arguments' names on lines of their own.
    let rendered = e.render().to_string();
    let first: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let err = error::CsmError::usage(first.join(" ").trim_start_matches("error: ").to_string());
    if words.iter().any(|w| w == "--json") {
        output::print_json_error(&err);
    }
    if !words.iter().any(|w| w == "test-endpoint") {
        return;
    }
    let junit = words
        .iter()
        .enumerate()
        .find_map(|(i, w)| match w.strip_prefix("--junit") {
            Some("") => words.get(i + 1).filter(|v| !v.starts_with('-')).cloned(),
            Some(v) => v.strip_prefix('=').map(str::to_string),
            None => None,
        });
    if let Some(path) = junit {
        commands::test_endpoint::write_refused_junit(std::path::Path::new(&path), &err);
    }
}

pub fn run(cli: Cli) -> Result<Exit> {
    let g = &cli.global;
    // `--json` is never ignored: commands with nothing to say in JSON refuse it.
    if let (true, Some(why)) = (g.json, no_json(&cli.command)) {
        return Err(error::CsmError::usage(format!(
            "--json: not for this command ({why})"
        )));
    }
    match cli.command {
        Command::Sign(a) => commands::sign::run(g, a),
        Command::Verify(a) => commands::verify::run(g, a),
        Command::Crypto(a) => commands::crypto::run(g, a),
        Command::Send(a) => commands::send::run(g, a),
        Command::TestEndpoint(a) => commands::test_endpoint::run(g, a),
        Command::Load(a) => commands::load::run(g, a),
        Command::Serve(a) => commands::serve::run(g, a),
        Command::License(a) => commands::license::run(g, a),
        Command::Usage(a) => commands::usage::run(g, a),
        Command::Init(a) => commands::init::run(g, a),
        Command::Profile(a) => commands::profile::run(g, a),
        Command::Completions(a) => commands::completions::run(g, a),
        Command::Man(a) => commands::man::run(g, a),
    }
}
