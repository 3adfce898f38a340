//! `csm profile list|show`: the profiles `csm init` wrote. Key files are named, never read.

use crate::cli::GlobalArgs;
use crate::config::{self, Profile};
use crate::error::{CsmError, Exit, Result};
use clap::{Args, Subcommand};
use serde_json::json;

#[derive(Debug, Args)]
pub struct ProfileArgs {
    #[command(subcommand)]
    pub command: ProfileCommand,
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// The profiles in the config file; `*` marks the one in use.
    List,
    /// One profile's settings (key file paths, never key contents).
    Show {
        /// The profile (default: the one in use, `--profile`/`CSM_PROFILE` or `default`).
        name: Option<String>,
    },
}

/// The profile in use: `--profile`/`CSM_PROFILE`, else `default`.
fn in_use(g: &GlobalArgs) -> &str {
    g.profile.as_deref().unwrap_or("default")
}

pub fn run(g: &GlobalArgs, a: ProfileArgs) -> Result<Exit> {
    let path = config::config_path();
    let cfg = config::load_config(&path)?;
    match a.command {
        ProfileCommand::List => {
            let names: Vec<&String> = cfg.profiles.keys().collect();
            // Listed all the same (the list is how to find the right name), but every other
            // command would fail on it: said here rather than at the next command.
            if let Some(name) = g
                .profile
                .as_deref()
                .filter(|n| !cfg.profiles.contains_key(*n))
            {
                eprintln!(
                    "csm: warning: {} {name}: no such profile in {} (other commands fail on it; `csm init --profile {name}` writes it)",
                    config::profile_source(name),
                    path.display()
                );
            }
            if g.json {
                crate::output::print_json(&json!({
                    "config": path.display().to_string(),
                    "in_use": in_use(g),
                    "profiles": names,
                }));
            } else if names.is_empty() && !g.quiet {
                eprintln!(
                    "no profiles in {} (write one with `csm init`)",
                    path.display()
                );
            } else {
                // `*` marks the profile in use; `-q` prints bare names (for completion).
                for n in names {
                    match (g.quiet, n == in_use(g)) {
                        (true, _) => crate::say!("{n}"),
                        (false, true) => crate::say!("* {n}"),
                        (false, false) => crate::say!("  {n}"),
                    }
                }
            }
        }
        ProfileCommand::Show { name: given } => {
            let name = given.as_deref().unwrap_or(in_use(g));
            let p = cfg.profiles.get(name).ok_or_else(|| {
                let known = if cfg.profiles.is_empty() {
                    "none; write one with `csm init`".to_string()
                } else {
                    cfg.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                };
                // Nothing named and no `default`: no profile is in use, which is no mistake.
                if given.is_none() && g.profile.is_none() {
                    CsmError::Config(format!(
                        "no profile is in use: none is named default and neither --profile nor CSM_PROFILE is set (known in {}: {known}); name one: `csm profile show NAME`",
                        path.display()
                    ))
                } else {
                    CsmError::Config(format!(
                        "profile {name}: no such profile in {} (known: {known})",
                        path.display()
                    ))
                }
            })?;
            show(g, name, p);
        }
    }
    Ok(Exit::Ok)
}

fn show(g: &GlobalArgs, name: &str, p: &Profile) {
    let file = |f: &Option<std::path::PathBuf>| {
        f.as_ref().map(|p| {
            let state = if config::expand_home(p).exists() {
                ""
            } else {
                " (missing)"
            };
            format!("{}{state}", p.display())
        })
    };
    let rows: [(&str, Option<String>); 8] = [
        ("endpoint", p.endpoint.clone()),
        ("protocol", p.protocol.clone()),
        ("key_file", file(&p.key_file)),
        ("kit_key_file", file(&p.kit_key_file)),
        ("license_key_file", file(&p.license_key_file)),
        ("ak", p.ak.clone()),
        ("sk_file", file(&p.sk_file)),
        ("marketplace_endpoint", p.marketplace_endpoint.clone()),
    ];
    if g.json {
        let mut v = json!({"name": name});
        for (k, val) in &rows {
            v[*k] = json!(val);
        }
        crate::output::print_json(&v);
        return;
    }
    crate::say!("profile {name}");
    for (k, v) in rows {
        crate::say!("  {k:<21} {}", v.as_deref().unwrap_or("-"));
    }
}
