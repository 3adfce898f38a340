//! What the commands that send callbacks share: endpoint, key files, durations, the
//! confirmation before calling anything but loopback (`send`, `test-endpoint`, `serve`).

use crate::catalog::KeyRole;
use crate::catalog::Protocol;
use crate::cli::GlobalArgs;
use crate::config::{self, Profile};
use crate::endpoint::request::Keys;
use crate::endpoint::url::parse_endpoint;
use crate::error::{CsmError, Result};
use crate::net::proxy::is_loopback;
use crate::protocol::rsa_oaep::{self, AppKey, Reading};
use reqwest::Url;
use std::path::PathBuf;
use std::time::Duration;

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

/// A proxy variable csm cannot use for `url` is a configuration error (exit 3), whatever
/// client would call it: checked before anything is asked or sent (not for a dry run,
/// which calls nothing).
pub fn check_proxy(url: &Url) -> Result<()> {
    crate::net::proxy::for_url(url, &crate::net::proxy::from_env)
        .map(|_| ())
        .map_err(CsmError::Config)
}

/// The marketplace base URL of `usage` and `license activate|heartbeat`, unparsed:
/// `--endpoint` (or its env var), else the profile's, else the production marketplace. The
/// flag is false when production was taken by default: see [`confirm_production`].
pub fn marketplace_base(given: Option<&str>, profile: &Profile) -> (String, bool) {
    match given.or(profile.marketplace_endpoint.as_deref()) {
        Some(raw) => (raw.to_string(), true),
        None => (crate::catalog::PRODUCTION_MARKETPLACE.to_string(), false),
    }
}

/// Production taken by default must be chosen on purpose: a yes at the terminal, or `--yes`.
/// `calls` names what would be sent, for the prompt and the refusal.
pub fn confirm_production(yes: bool, g: &GlobalArgs, calls: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    let url = crate::catalog::PRODUCTION_MARKETPLACE;
    ask(
        g,
        &format!("--endpoint: not given, and the default is the production marketplace {url}"),
        &format!(
            "pass --endpoint URL (or set one in a profile), or --yes to send {calls} to production"
        ),
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
    if yes || is_loopback(url) {
        return Ok(());
    }
    ask(
        g,
        &format!("{flag} {url}: not a loopback address"),
        &format!("pass --yes to send {calls} to it"),
        &format!("Send {calls} to {url}? It may be a production endpoint"),
        &format!("{flag} {url}: not confirmed; nothing was sent"),
    )
}

/// A yes from the person at the terminal. Where nobody can answer (`--no-input`, stdin or
/// stderr not a terminal), the error says `what` is the matter, why nobody was asked, and
/// `instead` what to do.
fn ask(g: &GlobalArgs, what: &str, instead: &str, prompt: &str, declined: &str) -> Result<()> {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdin())
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    if g.no_input || !terminal {
        let why = if g.no_input {
            "--no-input forbids asking"
        } else {
            "there is no terminal to confirm on"
        };
        return Err(CsmError::usage(format!("{what}, and {why}; {instead}")));
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

/// An endpoint that gave no reply at all, with the fix that fits how it failed.
pub fn unreachable(endpoint: &Url, f: &crate::endpoint::client::NetFailure) -> CsmError {
    use crate::endpoint::client::NetKind;
    let e = CsmError::Network(format!("--endpoint {endpoint}: unreachable: {}", f.message));
    if let Some(fix) = f.fix {
        return e.with_hint(fix);
    }
    match f.kind {
        NetKind::Connect => {
            e.with_hint("check the host and port, and that the endpoint is listening there")
        }
        NetKind::Timeout => e.with_hint(
            "the endpoint did not answer in time; --timeout sets the budget (the marketplace waits 5 s)",
        ),
        NetKind::Tls => e.with_hint(f.tls_fix()),
        NetKind::Reset | NetKind::Protocol => e,
    }
}

/// A value parser that takes any text (the command checks it, with its own messages) but
/// names the usual values, for shell completion and `--help`.
#[derive(Clone)]
pub struct Offered(pub fn() -> Vec<&'static str>);

impl clap::builder::TypedValueParser for Offered {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> std::result::Result<String, clap::Error> {
        clap::builder::StringValueParser::new().parse_ref(cmd, arg, value)
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            (self.0)()
                .into_iter()
                .map(clap::builder::PossibleValue::new),
        ))
    }
}

/// Every callback name of either protocol, for `send ACTIVITY`.
pub fn activity_names() -> Vec<&'static str> {
    let mut v = crate::catalog::names(crate::catalog::Protocol::V2);
    v.extend(crate::catalog::names(crate::catalog::Protocol::V1));
    v.sort_unstable();
    v.dedup();
    v
}

/// The reference merchant's faults.
pub fn merchant_fault_names() -> Vec<&'static str> {
    crate::merchant::Fault::ALL
        .iter()
        .map(|(n, _)| *n)
        .collect()
}

/// The key files of the three interface types, shared by `send`, `test-endpoint`, `load`
/// and `serve merchant`. Each interface type is used when its key is given (a License-only
/// product has no basic key); at least one is needed.
#[derive(Debug, Clone, clap::Args)]
pub struct InterfaceKeyFiles {
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

impl InterfaceKeyFiles {
    /// Reads the keys given (flag > env > profile), however many.
    pub fn read(&self, profile: &Profile) -> Result<Keys> {
        Ok(Keys {
            basic: config::find_key(KeyRole::Basic, self.key_file.as_deref(), profile)?,
            kit: config::find_key(KeyRole::Kit, self.kit_key_file.as_deref(), profile)?,
            license: config::find_key(KeyRole::License, self.license_key_file.as_deref(), profile)?,
        })
    }

    /// [`Self::read`], at least one key.
    pub fn load(&self, profile: &Profile) -> Result<Keys> {
        let keys = self.read(profile)?;
        if keys.basic.is_none() && keys.kit.is_none() && keys.license.is_none() {
            return Err(CsmError::Config(
                "--key-file: no key given (pass --key-file, --kit-key-file or --license-key-file FILE, set CSM_ACCESS_KEY, CSM_KIT_KEY or CSM_LICENSE_KEY, or name them in a profile with `csm init`)".into(),
            ));
        }
        Ok(keys)
    }
}

/// `--oaep`: how applicationSync's clientSecret is encrypted (decision 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OaepArg {
    /// SHA-256 digest, MGF1-SHA-1: Java's RSA/ECB/OAEPWithSHA-256AndMGF1Padding.
    #[value(name = "sha256-mgf1sha1")]
    Sha256Mgf1Sha1,
    /// SHA-256 digest and MGF1-SHA-256.
    Sha256,
    /// SHA-1 digest and MGF1-SHA-1.
    Sha1,
}

impl From<OaepArg> for Reading {
    fn from(a: OaepArg) -> Reading {
        match a {
            OaepArg::Sha256Mgf1Sha1 => Reading::Sha256Mgf1Sha1,
            OaepArg::Sha256 => Reading::Sha256,
            OaepArg::Sha1 => Reading::Sha1,
        }
    }
}

/// The key files of the commands that send callbacks (`send`, `test-endpoint`): the
/// interface keys, and the public key applicationSync's clientSecret is encrypted with.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyFiles {
    #[command(flatten)]
    pub interface: InterfaceKeyFiles,
    /// The RSA public key (PEM: SPKI or PKCS#1, at least 3072 bits) registered for your
    /// joint-operation app: applicationSync then carries a real RSA-OAEP ciphertext (Base64)
    /// of a fresh clientSecret. Without it, random bytes of a ciphertext's size stand in, which
    /// no private key decrypts. `csm crypto rsa-keygen` makes a pair.
    #[arg(long, value_name = "FILE")]
    pub app_public_key: Option<PathBuf>,
    /// OAEP parameters for --app-public-key (the docs do not name them).
    #[arg(long, value_enum, default_value_t = OaepArg::Sha256Mgf1Sha1, value_name = "READING")]
    pub oaep: OaepArg,
}

impl KeyFiles {
    /// Reads the interface keys: flag > env > profile.
    pub fn load(&self, profile: &Profile) -> Result<Keys> {
        self.interface.load(profile)
    }

    /// The `--app-public-key` with the `--oaep` reading, if given.
    pub fn app_key(&self) -> Result<Option<AppKey>> {
        let Some(path) = &self.app_public_key else {
            return Ok(None);
        };
        let key = read_rsa_pem(path, "--app-public-key", rsa_oaep::public_key_from_pem)?;
        Ok(Some(AppKey {
            key: std::sync::Arc::new(key),
            reading: self.oaep.into(),
        }))
    }
}

/// An RSA key file read by `parse`; errors name the flag and the path, never the content.
pub fn read_rsa_pem<T>(
    path: &std::path::Path,
    flag: &str,
    parse: fn(&str) -> std::result::Result<T, crate::protocol::ProtocolError>,
) -> Result<T> {
    let text = crate::files::read_text(path, crate::files::KEY_LIMIT, flag)?;
    parse(&text).map_err(|e| CsmError::usage(format!("{flag} {}: {e}", path.display())))
}

/// The most a `--ca-file` may hold (a full bundle of roots fits).
const CA_LIMIT: u64 = 1024 * 1024;

/// The `--ca-file` certificate, checked to be PEM.
pub fn read_ca(path: Option<&std::path::Path>) -> Result<Option<Vec<u8>>> {
    let Some(path) = path else { return Ok(None) };
    let pem = crate::files::read_limited(path, CA_LIMIT, "--ca-file")?;
    crate::net::tls::check_ca(&pem)
        .map_err(|e| CsmError::usage(format!("--ca-file {}: {e}", path.display())))?;
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
