//! `csm man DIR`: the manual pages committed under `man/`, one per command.

use crate::cli::{Cli, GlobalArgs};
use crate::error::{CsmError, Exit, Result};
use clap::{Args, CommandFactory};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created if absent).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Every page as (file name, roff bytes): `csm.1`, then `csm-usage-upload.1` and so on.
pub fn pages() -> Vec<(String, Vec<u8>)> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut out = Vec::new();
    walk(&cmd, "csm", &mut out);
    out
}

fn walk(cmd: &clap::Command, name: &str, out: &mut Vec<(String, Vec<u8>)>) {
    if cmd.is_hide_set() {
        return;
    }
    let page = cmd
        .clone()
        .name(name.to_string())
        .bin_name(name.replace('-', " "));
    let mut bytes = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = clap_mangen::Man::new(page).render(&mut bytes);
    out.push((format!("{name}.1"), bytes));
    for sub in cmd.get_subcommands() {
        if sub.get_name() != "help" {
            walk(sub, &format!("{name}-{}", sub.get_name()), out);
        }
    }
}

pub fn run(g: &GlobalArgs, a: ManArgs) -> Result<Exit> {
    if a.dir.exists() && !a.dir.is_dir() {
        return Err(CsmError::usage(format!(
            "DIR {}: not a directory (the pages go into a directory, made if absent)",
            a.dir.display()
        )));
    }
    std::fs::create_dir_all(&a.dir).map_err(|e| CsmError::io(&a.dir, e))?;
    let pages = pages();
    for (name, bytes) in &pages {
        crate::files::write_atomic(&a.dir.join(name), bytes, false)?;
    }
    if !g.quiet {
        crate::say!(
            "{} written to {} (`man csm` once it is on your MANPATH)",
            crate::output::plural(pages.len() as u64, "manual page"),
            a.dir.display()
        );
    }
    Ok(Exit::Ok)
}
