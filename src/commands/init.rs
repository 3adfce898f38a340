//! `csm init`: write a profile (endpoint, protocol, where each key lives). Every prompt has a
//! flag twin; without a terminal the flags are required.

use crate::cli::GlobalArgs;
use crate::config::{self, ConfigFile, Profile};
use crate::error::{CsmError, Exit, Result};
use crate::secret;
use clap::Args;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The merchant's production address (https://…).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Callback protocol version: v1 or v2.
    #[arg(long, value_name = "v1|v2")]
    pub protocol: Option<String>,
    /// File holding the basic-interface key.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// File holding the Kit (joint-operation sync) key.
    #[arg(long, value_name = "FILE")]
    pub kit_key_file: Option<PathBuf>,
    /// File holding the License delivery key.
    #[arg(long, value_name = "FILE")]
    pub license_key_file: Option<PathBuf>,
    /// API Gateway access key id (AK) for the marketplace open APIs.
    #[arg(long, value_name = "AK")]
    pub ak: Option<String>,
    /// File holding the API Gateway secret key (SK).
    #[arg(long, value_name = "FILE")]
    pub sk_file: Option<PathBuf>,
    /// Base URL of the marketplace open APIs (usage push, license activation).
    #[arg(long, value_name = "URL")]
    pub marketplace_endpoint: Option<String>,
}

/// The rule every endpoint flag follows (a host, no `user:password@`): the profile keeps it.
fn check_url(flag: &str, v: &str) -> Result<String> {
    crate::endpoint::url::parse_endpoint_for(flag, v.trim())?;
    Ok(v.trim().to_string())
}

fn check_protocol(v: &str) -> Result<String> {
    match v {
        "v1" | "v2" => Ok(v.to_string()),
        _ => Err(CsmError::usage(format!(
            "--protocol {v:?}: must be v1 or v2"
        ))),
    }
}

/// A key file must exist and hold a key; its content is never stored in the profile.
fn check_key_file(flag: &str, p: &Path) -> Result<PathBuf> {
    // Standard input is read once; a profile is read by every later command.
    if crate::files::is_stdin(p) {
        return Err(CsmError::usage(format!(
            "{flag} -: a profile names a file; standard input cannot be kept in one"
        )));
    }
    secret::read_key_file(p, flag)?;
    Ok(std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()))
}

/// One question of `csm init`.
struct Question<'a> {
    label: &'a str,
    /// The profile's value: the answer Enter gives, and the one kept without prompts.
    current: Option<String>,
    /// For an optional setting, what leaving it out means ("none", "the default").
    unset: Option<&'a str>,
    /// A key file's path: a leading `~` is the home directory (no shell expanded it).
    path: bool,
}

impl Question<'_> {
    fn prompt_text(&self) -> String {
        match (self.unset, &self.current) {
            (None, _) => self.label.to_string(),
            (Some(_), Some(_)) => format!("{} (Enter keeps, - clears)", self.label),
            (Some(unset), None) => format!("{} (empty: {unset})", self.label),
        }
    }

    /// An answer as typed (or the current value): trimmed, `~` expanded for a path; None
    /// when an optional setting is left out (empty, or `-`).
    fn value(&self, raw: &str) -> Option<String> {
        let v = raw.trim();
        if self.unset.is_some() && (v.is_empty() || v == "-") {
            return None;
        }
        Some(match self.path {
            true => config::expand_home(Path::new(v)).display().to_string(),
            false => v.to_string(),
        })
    }
}

fn prompt(q: &Question) -> Result<String> {
    let label = q.prompt_text();
    let mut input = dialoguer::Input::<String>::new()
        .with_prompt(&label)
        .allow_empty(q.unset.is_some());
    if let Some(d) = &q.current {
        input = input.default(d.clone());
    }
    input
        .interact_text()
        .map_err(|e| CsmError::Config(format!("prompt {label}: {e}")))
}

/// The setting `given` on the command line (checked already), else asked on the terminal,
/// else, without prompts, the profile's value. A wrong answer is said (the line its flag
/// would get) and asked again: ending init there would lose the answers before it.
fn answer<T>(
    given: Option<T>,
    interactive: bool,
    q: Question,
    check: impl Fn(&str) -> Result<T>,
) -> Result<Option<T>> {
    if given.is_some() {
        return Ok(given);
    }
    if !interactive {
        return q
            .current
            .as_deref()
            .and_then(|v| q.value(v))
            .map(|v| check(&v))
            .transpose();
    }
    loop {
        let Some(v) = q.value(&prompt(&q)?) else {
            return Ok(None);
        };
        match check(&v) {
            Ok(v) => return Ok(Some(v)),
            Err(e) => crate::output::print_error(&e),
        }
    }
}

pub fn run(g: &GlobalArgs, a: InitArgs) -> Result<Exit> {
    let name = g.profile.clone().unwrap_or_else(|| "default".into());
    let interactive =
        !g.no_input && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let path = config::config_path();
    let mut cfg: ConfigFile = config::load_config(&path)?;
    let old = cfg.profiles.get(&name).cloned().unwrap_or_default();

    let missing: Vec<&str> = [
        ("--endpoint URL", a.endpoint.is_none()),
        ("--protocol v1|v2", a.protocol.is_none()),
        ("--key-file FILE", a.key_file.is_none()),
    ]
    .into_iter()
    .filter_map(|(flag, missing)| missing.then_some(flag))
    .collect();
    if !interactive && !missing.is_empty() {
        let why = match g.no_input {
            true => "--no-input (or CSM_NO_INPUT) forbids prompting for them",
            false => "there is no terminal to prompt for them",
        };
        return Err(CsmError::usage(format!(
            "csm init: missing {}; {why}",
            missing.join(", ")
        )));
    }
    // The flags first: a wrong one ends init before any question is asked. Their paths are
    // taken as given (the shell expanded `~` in them).
    let given_url = |flag, v: &Option<String>| v.as_deref().map(|v| check_url(flag, v)).transpose();
    let given_key =
        |flag, p: &Option<PathBuf>| p.as_deref().map(|p| check_key_file(flag, p)).transpose();
    let endpoint = given_url("--endpoint", &a.endpoint)?;
    let protocol = a.protocol.as_deref().map(check_protocol).transpose()?;
    let key_file = given_key("--key-file", &a.key_file)?;
    let kit_key_file = given_key("--kit-key-file", &a.kit_key_file)?;
    let license_key_file = given_key("--license-key-file", &a.license_key_file)?;
    let sk_file = given_key("--sk-file", &a.sk_file)?;
    let marketplace_endpoint = given_url("--marketplace-endpoint", &a.marketplace_endpoint)?;

    let path_str = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let key_question = |label, current: &Option<PathBuf>, required: bool| Question {
        label,
        current: path_str(current),
        unset: (!required).then_some("none"),
        path: true,
    };
    let endpoint = answer(
        endpoint,
        interactive,
        Question {
            label: "Production address (endpoint URL)",
            current: old.endpoint.clone(),
            unset: None,
            path: false,
        },
        |v| check_url("--endpoint", v),
    )?;
    let protocol = answer(
        protocol,
        interactive,
        Question {
            label: "Protocol (v1 or v2)",
            current: old.protocol.clone().or(Some("v2".into())),
            unset: None,
            path: false,
        },
        check_protocol,
    )?;
    let key_file = answer(
        key_file,
        interactive,
        key_question("Basic-interface key file", &old.key_file, true),
        |v| check_key_file("--key-file", Path::new(v)),
    )?;
    let kit_key_file = answer(
        kit_key_file,
        interactive,
        key_question("Kit key file", &old.kit_key_file, false),
        |v| check_key_file("--kit-key-file", Path::new(v)),
    )?;
    let license_key_file = answer(
        license_key_file,
        interactive,
        key_question("License key file", &old.license_key_file, false),
        |v| check_key_file("--license-key-file", Path::new(v)),
    )?;
    let ak = answer(
        a.ak.clone(),
        interactive,
        Question {
            label: "API Gateway AK",
            current: old.ak.clone(),
            unset: Some("none"),
            path: false,
        },
        |v| Ok(v.to_string()),
    )?;
    let sk_file = answer(
        sk_file,
        interactive,
        key_question("API Gateway SK file", &old.sk_file, false),
        |v| check_key_file("--sk-file", Path::new(v)),
    )?;
    let marketplace_endpoint = answer(
        marketplace_endpoint,
        interactive,
        Question {
            label: "Marketplace API base URL",
            current: old.marketplace_endpoint.clone(),
            unset: Some("the default"),
            path: false,
        },
        |v| check_url("--marketplace-endpoint", v),
    )?;

    let profile = Profile {
        name: None,
        endpoint,
        protocol,
        key_file,
        kit_key_file,
        license_key_file,
        ak,
        sk_file,
        marketplace_endpoint,
    };
    // Without prompts, settings not given again stay as they were: said, so that a profile
    // rewritten for a new key does not keep an old one unnoticed.
    let kept: Vec<&str> = [
        (
            "--kit-key-file",
            a.kit_key_file.is_none() && old.kit_key_file.is_some(),
        ),
        (
            "--license-key-file",
            a.license_key_file.is_none() && old.license_key_file.is_some(),
        ),
        ("--ak", a.ak.is_none() && old.ak.is_some()),
        ("--sk-file", a.sk_file.is_none() && old.sk_file.is_some()),
        (
            "--marketplace-endpoint",
            a.marketplace_endpoint.is_none() && old.marketplace_endpoint.is_some(),
        ),
    ]
    .into_iter()
    .filter(|(_, kept)| *kept && !interactive)
    .map(|(flag, _)| flag)
    .collect();
    cfg.profiles.insert(name.clone(), profile);
    write_config(&path, &cfg)?;
    if !g.quiet {
        crate::say!("profile {name:?} written to {}", path.display());
        if !kept.is_empty() {
            crate::say!(
                "kept from the profile as it was: {} (give the flag again to change it; `csm profile show {name}` lists them)",
                kept.join(", ")
            );
        }
    }
    Ok(Exit::Ok)
}

/// Writes the config atomically, mode 0600 in a 0700 directory.
fn write_config(path: &Path, cfg: &ConfigFile) -> Result<()> {
    let text = toml::to_string_pretty(cfg)
        .map_err(|e| CsmError::Config(format!("{}: cannot serialise: {e}", path.display())))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| CsmError::io(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    crate::files::write_atomic(path, text.as_bytes(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(
        current: Option<&str>,
        unset: Option<&'static str>,
        path: bool,
    ) -> Question<'static> {
        Question {
            label: "Kit key file",
            current: current.map(str::to_string),
            unset,
            path,
        }
    }

    #[test]
    fn the_prompt_says_how_to_keep_or_clear() {
        let q = question(Some("/k"), Some("none"), true);
        assert_eq!(q.prompt_text(), "Kit key file (Enter keeps, - clears)");
        let q = question(None, Some("none"), true);
        assert_eq!(q.prompt_text(), "Kit key file (empty: none)");
        let q = question(Some("/k"), None, true);
        assert_eq!(q.prompt_text(), "Kit key file");
    }

    #[test]
    fn a_dash_clears_an_optional_answer_only() {
        let optional = question(Some("/k"), Some("none"), false);
        assert_eq!(optional.value(" - "), None);
        assert_eq!(optional.value(""), None);
        assert_eq!(optional.value(" /k2 ").as_deref(), Some("/k2"));
        // A required answer goes to its check, which refuses `-` or an empty one.
        let required = question(None, None, false);
        assert_eq!(required.value("-").as_deref(), Some("-"));
        assert!(check_key_file("--key-file", Path::new("-")).is_err());
    }

    #[test]
    fn tilde_in_a_typed_path_is_the_home_directory() {
        let home = dirs::home_dir().expect("a home directory");
        let q = question(None, Some("none"), true);
        let want = home.join(".keys/kit").display().to_string();
        assert_eq!(q.value("~/.keys/kit"), Some(want));
        let url = question(None, Some("none"), false);
        assert_eq!(url.value("~/x").as_deref(), Some("~/x"));
    }
}
