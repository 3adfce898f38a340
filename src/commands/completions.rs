//! `csm completions SHELL`: the scripts committed under `completions/` come from here.

use crate::cli::{Cli, GlobalArgs};
use crate::error::{Exit, Result};
use clap::{Args, CommandFactory};
use clap_complete::Shell;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, powershell or elvish.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The completion script for `shell`, as bytes. Profile names live in the user's config, so
/// `--profile` asks `csm profile list -q` at completion time (bash, zsh, fish).
pub fn generate(shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "csm", &mut out);
    let script = String::from_utf8_lossy(&out).into_owned();
    let profiles = "csm profile list -q 2>/dev/null";
    let script = match shell {
        Shell::Bash => script.replace(
            "--profile)\n                    COMPREPLY=($(compgen -f \"${cur}\"))",
            &format!("--profile)\n                    COMPREPLY=($(compgen -W \"$({profiles})\" -- \"${{cur}}\"))"),
        ),
        Shell::Zsh => script.replace(
            "supplies endpoint and key locations]:NAME:_default'",
            &format!("supplies endpoint and key locations]:NAME:{{compadd -- $({profiles})}}'"),
        ),
        Shell::Fish => script.replace(
            "supplies endpoint and key locations' -r",
            &format!("supplies endpoint and key locations' -r -f -a \"({profiles})\""),
        ),
        _ => script,
    };
    script.into_bytes()
}

/// The file name each shell expects, as committed under `completions/`.
pub fn file_name(shell: Shell) -> &'static str {
    match shell {
        Shell::Bash => "csm.bash",
        Shell::Zsh => "_csm",
        Shell::Fish => "csm.fish",
        Shell::PowerShell => "_csm.ps1",
        Shell::Elvish => "csm.elv",
        _ => "csm.unknown",
    }
}

pub fn run(_g: &GlobalArgs, a: CompletionsArgs) -> Result<Exit> {
    use std::io::Write;
    let _ = std::io::stdout().write_all(&generate(a.shell));
    Ok(Exit::Ok)
}
