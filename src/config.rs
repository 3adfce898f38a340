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
    /// Its name in config.toml (set by [`load_config`]), for the messages about its files.
    #[serde(skip)]
    pub name: Option<String>,
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
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ConfigFile::default()),
        Err(e) => return Err(CsmError::io(path, e)),
    };
    let mut cfg: ConfigFile = toml::from_str(&text).map_err(|e| config_error(path, &text, &e))?;
    for (name, p) in &mut cfg.profiles {
        p.name = Some(name.clone());
    }
    Ok(cfg)
}

/// A config.toml that does not parse, on one line: the place (from the parser's byte span)
/// and the parser's message, whose own line breaks are joined. Every command refuses it:
/// a profile silently ignored would send with the wrong keys or to the wrong endpoint.
fn config_error(path: &Path, text: &str, e: &toml::de::Error) -> CsmError {
    let at = e
        .span()
        .and_then(|span| text.get(..span.start))
        .map(|before| {
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!(" at line {line} column {column}")
        })
        .unwrap_or_default();
    let why: Vec<&str> = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    CsmError::Config(format!(
        "{}: not a valid csm config{at}: {}",
        path.display(),
        why.join("; ")
    ))
}

/// A leading `~/` (or a bare `~`) as the home directory, for key file paths typed at a
/// prompt or written in config.toml: no shell expanded them (a flag's path it did).
pub fn expand_home(path: &Path) -> PathBuf {
    let home = dirs::home_dir();
    match (path.strip_prefix("~"), home) {
        (Ok(rest), Some(home)) if rest.as_os_str().is_empty() => home,
        (Ok(rest), Some(home)) => home.join(rest),
        _ => path.to_path_buf(),
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
                "{} {name}: no such profile in {} (run `csm init --profile {name}`)",
                profile_source(name),
                path.display()
            ))
        }),
        None => Ok(cfg.profiles.get("default").cloned().unwrap_or_default()),
    }
}

/// Where the selected profile `name` came from, for messages: `CSM_PROFILE` when the
/// variable holds it, else `--profile` (the flag wins over the variable).
pub fn profile_source(name: &str) -> &'static str {
    if std::env::var("CSM_PROFILE").is_ok_and(|v| v == name) {
        "CSM_PROFILE"
    } else {
        "--profile"
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

/// The profile's key file for `role` (`~` expanded) and its key in config.toml.
fn profile_key_path(role: KeyRole, p: &Profile) -> Option<(PathBuf, &'static str)> {
    let (path, key) = match role {
        KeyRole::Basic => (&p.key_file, "key_file"),
        KeyRole::Kit => (&p.kit_key_file, "kit_key_file"),
        KeyRole::License => (&p.license_key_file, "license_key_file"),
        KeyRole::Sk => (&p.sk_file, "sk_file"),
    };
    path.as_deref().map(|path| (expand_home(path), key))
}

/// The key for `role`, or None when neither flag, env nor profile names one.
pub fn find_key(role: KeyRole, flag: Option<&Path>, profile: &Profile) -> Result<Option<Secret>> {
    if let Some(path) = flag {
        return secret::read_key_file(path, key_flag(role)).map(Some);
    }
    if let Ok(v) = std::env::var(key_env(role)) {
        return secret::from_env_value(&v, key_env(role)).map(Some);
    }
    if let Some((path, key)) = profile_key_path(role, profile) {
        // Named as the config file names it: the fix is in the profile, not in a flag.
        let what = match &profile.name {
            Some(name) => format!("profile {name:?} {key}"),
            None => format!("profile {key}"),
        };
        return secret::read_key_file(&path, &what).map(Some);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_home_takes_a_leading_tilde_only() {
        let home = dirs::home_dir().expect("a home directory");
        assert_eq!(
            expand_home(Path::new("~/.keys/basic")),
            home.join(".keys/basic")
        );
        assert_eq!(expand_home(Path::new("~")), home);
        // Another user's home, a `~` further in, and plain paths are left as they are.
        for p in ["~other/k", "keys/~/k", "/etc/k", "k~", ""] {
            assert_eq!(expand_home(Path::new(p)), PathBuf::from(p), "{p}");
        }
    }

    #[test]
    fn a_broken_config_is_one_line_with_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let cases = [
            // (text, the place, the parser's message starts)
            (
                "[profiles.a\n",
                "line 1 column 12",
                "invalid table header; expected",
            ),
            (
                "# ü\n[profiles.a]\nendpoint = 3\n",
                "line 3 column 12",
                "invalid type: integer `3`",
            ),
            (
                "\r\n[profiles.a]\r\nnope = 1\r\n",
                "line 3 column 1",
                "unknown field `nope`",
            ),
        ];
        for (text, at, why) in cases {
            std::fs::write(&path, text).unwrap();
            let err = load_config(&path).unwrap_err().to_string();
            let want = format!("{}: not a valid csm config at {at}: {why}", path.display());
            assert!(err.starts_with(&want), "{text:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn loaded_profiles_know_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[profiles.prod]\nkey_file = \"k\"\n").unwrap();
        let cfg = load_config(&path).unwrap();
        assert_eq!(cfg.profiles["prod"].name.as_deref(), Some("prod"));
        // The name is the table's, never a key of its own.
        assert!(!toml::to_string(&cfg).unwrap().contains("name"));
        std::fs::write(&path, "[profiles.prod]\nname = \"x\"\n").unwrap();
        assert!(load_config(&path).is_err());
    }
}
