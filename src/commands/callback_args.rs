//! What the commands that send callbacks share: endpoint, key files, durations, the
//! confirmation before calling anything but loopback (`send`, `test-endpoint`, `serve`).

use crate::catalog::Protocol;
use crate::cli::GlobalArgs;
use crate::config::{self, KeyRole, Profile};
use crate::endpoint::judge;
use crate::endpoint::request::Keys;
use crate::error::{CsmError, Result};
use reqwest::Url;
use std::path::PathBuf;
use std::time::Duration;

/// `5s`, `1500ms`, `1.5s`, `2m`, or plain seconds.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration such as 5s or 1500ms"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        _ => return Err(format!("{s:?}: unit must be ms, s or m")),
    };
    if !(0.001..=600.0).contains(&secs) {
        return Err(format!("{s:?}: must be between 1ms and 10m"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses an `--endpoint` URL; only http and https, without user name or password.
pub fn parse_endpoint(s: &str) -> Result<Url> {
    parse_endpoint_for("--endpoint", s)
}

/// The same for a URL given by another flag, named in the messages.
pub fn parse_endpoint_for(flag: &str, s: &str) -> Result<Url> {
    let url = Url::parse(s).map_err(|e| {
        // Echo the value unless it may hold credentials (`user:password@`).
        let shown = if s.contains('@') {
            String::new()
        } else {
            format!(" {s:?}")
        };
        CsmError::usage(format!(
            "{flag}{shown}: not a URL ({e}); write it as https://host/path"
        ))
    })?;
    // Credentials in the URL would be printed with every request (and the marketplace
    // never sends any): refuse them, without echoing the URL that holds them.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(CsmError::usage(format!(
            "{flag}: must not contain a user name or password (user:password@host); remove them from the URL"
        )));
    }
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(CsmError::usage(format!(
            "{flag} {s:?}: must be an http:// or https:// URL with a host"
        )));
    }
    Ok(url)
}

/// The endpoint from `--endpoint` or the profile; `hint` adds what else the command offers.
pub fn endpoint_from(given: Option<&str>, profile: &Profile, hint: &str) -> Result<Url> {
    let raw = given
        .or(profile.endpoint.as_deref())
        .ok_or_else(|| {
            CsmError::usage(format!(
                "--endpoint: no endpoint given (pass --endpoint URL or name one in a profile with `csm init`{hint})"
            ))
        })?;
    parse_endpoint(raw)
}

/// The marketplace base URL of `usage` and `license activate|heartbeat`: `--endpoint` (or
/// its env var), else the profile's, else `default` (production). Production taken by
/// default must be chosen on purpose: confirmed on a terminal, or `--yes`. `calls` names
/// what would be sent, for the prompt and the refusal.
pub fn marketplace_base(
    given: Option<&str>,
    profile: &Profile,
    default: &str,
    yes: bool,
    g: &GlobalArgs,
    calls: &str,
) -> Result<Url> {
    match given.or(profile.marketplace_endpoint.as_deref()) {
        Some(raw) => parse_endpoint(raw),
        None => {
            let url = parse_endpoint(default)?;
            confirm_default_marketplace(&url, yes, g, calls)?;
            Ok(url)
        }
    }
}

fn confirm_default_marketplace(url: &Url, yes: bool, g: &GlobalArgs, calls: &str) -> Result<()> {
    if yes || judge::is_loopback(url) {
        return Ok(());
    }
    ask(
        g,
        &format!("--endpoint: not given, and the default is the production marketplace {url}; pass --endpoint URL (or set one in a profile), or --yes to send {calls} to production"),
        &format!("No --endpoint given: send {calls} to the PRODUCTION marketplace {url}?"),
        &format!("--endpoint {url}: not confirmed; nothing was sent"),
    )
}

/// What the seller-center debugging page waits for a reply (its own budget, not the 5 s of
/// production calls).
pub const DEBUG_PAGE_BUDGET: Duration = Duration::from_secs(20);

/// The time a reply may take: `--timeout`, or the debugging page's budget.
pub fn reply_budget(debug_page: bool, timeout: Duration) -> Duration {
    if debug_page {
        DEBUG_PAGE_BUDGET
    } else {
        timeout
    }
}

/// A seller's endpoint may be production: calls to anything but loopback need a yes.
/// `flag` names the option that gave the URL in messages.
pub fn confirm_remote(flag: &str, url: &Url, yes: bool, g: &GlobalArgs, calls: &str) -> Result<()> {
    if yes || judge::is_loopback(url) {
        return Ok(());
    }
    ask(
        g,
        &format!("{flag} {url}: not a loopback address and there is no terminal to confirm on; pass --yes to send {calls} to it"),
        &format!("Send {calls} to {url}? It may be a production endpoint"),
        &format!("{flag} {url}: not confirmed; nothing was sent"),
    )
}

/// A yes from the person at the terminal, or the error `no_terminal` where nobody can answer
/// (`--no-input`, stdin or stderr not a terminal).
fn ask(g: &GlobalArgs, no_terminal: &str, prompt: &str, declined: &str) -> Result<()> {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdin())
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    if g.no_input || !terminal {
        return Err(CsmError::usage(no_terminal));
    }
    let ok = dialoguer::Confirm::new()
        .with_prompt(prompt)
        .default(false)
        .interact()
        .map_err(|e| CsmError::Config(format!("confirmation prompt: {e}")))?;
    if ok {
        Ok(())
    } else {
        Err(CsmError::usage(declined))
    }
}

/// The key files of the three interface types, shared by `send`, `test-endpoint` and
/// `serve merchant`. Each interface type is used when its key is given (a License-only
/// product has no basic key); at least one is needed.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyFiles {
    /// File holding the key bound to the basic interfaces (also CSM_ACCESS_KEY). orderNotify
    /// is signed with this key too: pass the general (通用) interface key for it.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// File holding the Kit (joint-operation sync) key (also CSM_KIT_KEY).
    #[arg(long, value_name = "FILE")]
    pub kit_key_file: Option<PathBuf>,
    /// File holding the License delivery key (also CSM_LICENSE_KEY).
    #[arg(long, value_name = "FILE")]
    pub license_key_file: Option<PathBuf>,
}

impl KeyFiles {
    /// Reads the keys: flag > env > profile.
    pub fn load(&self, profile: &Profile) -> Result<Keys> {
        let keys = Keys {
            basic: config::find_key(KeyRole::Basic, self.key_file.as_deref(), profile)?,
            kit: config::find_key(KeyRole::Kit, self.kit_key_file.as_deref(), profile)?,
            license: config::find_key(KeyRole::License, self.license_key_file.as_deref(), profile)?,
        };
        if keys.basic.is_none() && keys.kit.is_none() && keys.license.is_none() {
            return Err(CsmError::usage(
                "--key-file: no key given (pass --key-file, --kit-key-file or --license-key-file FILE, set CSM_ACCESS_KEY, CSM_KIT_KEY or CSM_LICENSE_KEY, or name them in a profile with `csm init`)",
            ));
        }
        Ok(keys)
    }
}

/// The most a `--ca-file` may hold (a full bundle of roots fits).
const CA_LIMIT: u64 = 1024 * 1024;

/// The `--ca-file` certificate, checked to be PEM.
pub fn read_ca(path: Option<&std::path::Path>) -> Result<Option<Vec<u8>>> {
    let Some(path) = path else { return Ok(None) };
    let pem = crate::files::read_limited(path, CA_LIMIT, "--ca-file")?;
    let is_pem = pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----");
    if !is_pem || reqwest::Certificate::from_pem(&pem).is_err() {
        return Err(CsmError::usage(format!(
            "--ca-file {}: not a PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(Some(pem))
}

pub fn resolve_protocol(flag: Option<Protocol>, profile: &Profile) -> Result<Protocol> {
    if let Some(p) = flag {
        return Ok(p);
    }
    match &profile.protocol {
        None => Ok(Protocol::V2),
        Some(s) => Protocol::parse(s).ok_or_else(|| {
            CsmError::Config(format!(
                "profile protocol {s:?}: must be v1 or v2 (edit it with `csm init`)"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(
            parse_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("abc").is_err());
    }

    #[test]
    fn endpoints() {
        assert!(parse_endpoint("https://isv.example.com/produce").is_ok());
        let e = parse_endpoint("ftp://x/").unwrap_err().to_string();
        assert!(e.contains("http:// or https://"), "{e}");
        let e = parse_endpoint("not a url").unwrap_err().to_string();
        assert!(e.contains("\"not a url\""), "{e}");
        let e = parse_endpoint("http://u:s3cret@host:99999/")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret"), "{e}");
        for u in [
            "http://user:pw@127.0.0.1:1/",
            "https://user@isv.example.com/",
        ] {
            let e = parse_endpoint(u).unwrap_err();
            assert_eq!(e.exit().code(), 2, "{u}");
            let text = e.to_string();
            assert!(text.contains("--endpoint") && text.contains("user name or password"));
            assert!(!text.contains("pw@") && !text.contains("user@"), "{text}");
        }
    }
}
