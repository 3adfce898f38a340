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

fn check_url(flag: &str, v: &str) -> Result<String> {
    if v.starts_with("https://") || v.starts_with("http://") {
        Ok(v.trim().to_string())
    } else {
        Err(CsmError::usage(format!(
            "{flag} {v:?}: must be an http:// or https:// URL"
        )))
    }
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
    secret::read_key_file(p, flag)?;
    Ok(std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()))
}

fn prompt(label: &str, default: Option<&str>, optional: bool) -> Result<Option<String>> {
    let mut input = dialoguer::Input::<String>::new()
        .with_prompt(label)
        .allow_empty(optional);
    if let Some(d) = default {
        input = input.default(d.to_string());
    }
    let v = input
        .interact_text()
        .map_err(|e| CsmError::Config(format!("prompt {label}: {e}")))?;
    Ok(if v.trim().is_empty() {
        None
    } else {
        Some(v.trim().to_string())
    })
}

pub fn run(g: &GlobalArgs, a: InitArgs) -> Result<Exit> {
    let name = g.profile.clone().unwrap_or_else(|| "default".into());
    let interactive =
        !g.no_input && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let path = config::config_path();
    let mut cfg: ConfigFile = config::load_config(&path)?;
    let old = cfg.profiles.get(&name).cloned().unwrap_or_default();

    if !interactive && (a.endpoint.is_none() || a.protocol.is_none() || a.key_file.is_none()) {
        return Err(CsmError::usage(
            "csm init: no terminal for prompts; pass --endpoint URL --protocol v1|v2 --key-file FILE \
             (optional: --kit-key-file, --license-key-file, --ak, --sk-file, --marketplace-endpoint)",
        ));
    }
    let ask = |flag: &Option<String>,
               label: &str,
               default: Option<String>,
               optional: bool|
     -> Result<Option<String>> {
        match flag {
            Some(v) => Ok(Some(v.clone())),
            None if interactive => prompt(label, default.as_deref(), optional),
            None => Ok(default),
        }
    };
    let path_str = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());

    let endpoint = ask(
        &a.endpoint,
        "Production address (endpoint URL)",
        old.endpoint.clone(),
        false,
    )?
    .map(|v| check_url("--endpoint", &v))
    .transpose()?;
    let protocol = ask(
        &a.protocol,
        "Protocol (v1 or v2)",
        old.protocol.clone().or(Some("v2".into())),
        false,
    )?
    .map(|v| check_protocol(&v))
    .transpose()?;
    let key_file = ask(
        &path_str(&a.key_file),
        "Basic-interface key file",
        path_str(&old.key_file),
        false,
    )?
    .map(|v| check_key_file("--key-file", Path::new(&v)))
    .transpose()?;
    let kit_key_file = ask(
        &path_str(&a.kit_key_file),
        "Kit key file (empty: none)",
        path_str(&old.kit_key_file),
        true,
    )?
    .map(|v| check_key_file("--kit-key-file", Path::new(&v)))
    .transpose()?;
    let license_key_file = ask(
        &path_str(&a.license_key_file),
        "License key file (empty: none)",
        path_str(&old.license_key_file),
        true,
    )?
    .map(|v| check_key_file("--license-key-file", Path::new(&v)))
    .transpose()?;
    let ak = ask(&a.ak, "API Gateway AK (empty: none)", old.ak.clone(), true)?;
    let sk_file = ask(
        &path_str(&a.sk_file),
        "API Gateway SK file (empty: none)",
        path_str(&old.sk_file),
        true,
    )?
    .map(|v| check_key_file("--sk-file", Path::new(&v)))
    .transpose()?;
    let marketplace_endpoint = ask(
        &a.marketplace_endpoint,
        "Marketplace API base URL (empty: the default)",
        old.marketplace_endpoint.clone(),
        true,
    )?
    .map(|v| check_url("--marketplace-endpoint", &v))
    .transpose()?;

    let profile = Profile {
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
