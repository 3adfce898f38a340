//! Profiles (written by `csm init`) and the resolution of keys and endpoints.
//! Precedence: flag > environment > profile > built-in default.

use crate::catalog::KeyRole;
use crate::error::{CsmError, Result};
use crate::secret::{self, Secret};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One named profile. Keys are never stored here, only where they live.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// `v1` or `v2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kit_key_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license_key_file: Option<PathBuf>,
    /// API Gateway access key id (not a secret by itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ak: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sk_file: Option<PathBuf>,
    /// Base URL of the marketplace open APIs (usage push, license activate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marketplace_endpoint: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// `$CSM_CONFIG_DIR/config.toml`, else `<XDG config dir>/csm/config.toml`.
pub fn config_path() -> PathBuf {
    if let Some(d) = std::env::var_os("CSM_CONFIG_DIR") {
        return PathBuf::from(d).join("config.toml");
    }
    dirs::config_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("csm")
        .join("config.toml")
}

pub fn load_config(path: &Path) -> Result<ConfigFile> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| {
            CsmError::Config(format!(
                "{}: not a valid csm config: {}",
                path.display(),
                e.message()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(e) => Err(CsmError::io(path, e)),
    }
}

/// An empty `CSM_*` variable is taken as unset: CI templates expand a variable they do not
/// have (a secret withheld from a forked pull request, say) to an empty string. Called first
/// thing, while the process has one thread.
pub fn unset_empty_env() {
    let empty: Vec<std::ffi::OsString> = std::env::vars_os()
        .filter(|(k, v)| k.to_string_lossy().starts_with("CSM_") && v.is_empty())
        .map(|(k, _)| k)
        .collect();
    for k in empty {
        std::env::remove_var(k);
    }
}

/// The profile named `name` (`--profile`/`CSM_PROFILE`), or `default` when it exists, or
/// empty.
pub fn active_profile(name: Option<&str>) -> Result<Profile> {
    let path = config_path();
    let cfg = load_config(&path)?;
    match name {
        Some(name) => cfg.profiles.get(name).cloned().ok_or_else(|| {
            CsmError::Config(format!(
                "--profile {name}: no such profile in {} (run `csm init --profile {name}`)",
                path.display()
            ))
        }),
        None => Ok(cfg.profiles.get("default").cloned().unwrap_or_default()),
    }
}

/// The flag that names the key file for `role`.
pub fn key_flag(role: KeyRole) -> &'static str {
    match role {
        KeyRole::Basic => "--key-file",
        KeyRole::Kit => "--kit-key-file",
        KeyRole::License => "--license-key-file",
        KeyRole::Sk => "--sk-file",
    }
}

/// The environment variable that holds the key for `role`.
pub fn key_env(role: KeyRole) -> &'static str {
    match role {
        KeyRole::Basic => "CSM_ACCESS_KEY",
        KeyRole::Kit => "CSM_KIT_KEY",
        KeyRole::License => "CSM_LICENSE_KEY",
        KeyRole::Sk => "CSM_SK",
    }
}

fn profile_key_path(role: KeyRole, p: &Profile) -> Option<PathBuf> {
    match role {
        KeyRole::Basic => p.key_file.clone(),
        KeyRole::Kit => p.kit_key_file.clone(),
        KeyRole::License => p.license_key_file.clone(),
        KeyRole::Sk => p.sk_file.clone(),
    }
}

/// The key for `role`, or None when neither flag, env nor profile names one.
pub fn find_key(role: KeyRole, flag: Option<&Path>, profile: &Profile) -> Result<Option<Secret>> {
    if let Some(path) = flag {
        return secret::read_key_file(path, key_flag(role)).map(Some);
    }
    if let Ok(v) = std::env::var(key_env(role)) {
        return secret::from_env_value(&v, key_env(role)).map(Some);
    }
    if let Some(path) = profile_key_path(role, profile) {
        return secret::read_key_file(&path, &format!("profile {}", key_flag(role))).map(Some);
    }
    Ok(None)
}

/// The access key id of the APIG-signed open APIs: `--ak`, else the profile's. Given nowhere,
/// it is a configuration error, as a missing secret key is. `env` says whether the command's
/// `--ak` also reads `CSM_AK` (`usage` does not: there an `--ak` without `--apig` is refused,
/// and the variable may be set for other commands).
pub fn require_ak(flag: Option<&str>, profile: &Profile, env: bool) -> Result<String> {
    let ak = flag
        .map(str::to_string)
        .or_else(|| profile.ak.clone())
        .ok_or_else(|| {
            let env = if env { ", set CSM_AK" } else { "" };
            CsmError::Config(format!(
                "--ak: no access key id given (pass --ak AK{env}, or name it in a profile with `csm init`)"
            ))
        })?;
    // An access key id is letters and digits (it goes into the Authorization header as it
    // is): an empty one, or one with a space or comma, is a mistake found before sending.
    if ak.is_empty() || ak.contains(|c: char| c.is_whitespace() || c == ',') {
        return Err(CsmError::usage(format!(
            "--ak {ak:?}: an access key id is one word without spaces or commas (API Gateway's AK)"
        )));
    }
    Ok(ak)
}

/// Like [`find_key`], but a missing key is a configuration error (as a missing key file is)
/// that names the flag and the variable.
pub fn require_key(role: KeyRole, flag: Option<&Path>, profile: &Profile) -> Result<Secret> {
    find_key(role, flag, profile)?.ok_or_else(|| {
        CsmError::Config(format!(
            "{}: no key given (pass {} FILE, set {}, or name it in a profile with `csm init`)",
            key_flag(role),
            key_flag(role),
            key_env(role)
        ))
    })
}
