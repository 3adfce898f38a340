//! `csm crypto derive-key|encrypt|decrypt`: V1 sensitive-field encryption; `csm crypto
//! rsa-keygen`: the RSA pair whose public key encrypts applicationSync's clientSecret.

use crate::catalog::KeyRole;
use crate::cli::GlobalArgs;
use crate::clock;
use crate::config;
use crate::error::{CsmError, Exit, Result};
use crate::protocol::hmac::to_hex;
use crate::protocol::rsa_oaep;
use crate::protocol::v1_crypto::{self, EncryptType};
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct CryptoArgs {
    #[command(subcommand)]
    pub action: CryptoAction,
}

#[derive(Debug, Args)]
pub struct CryptoKey {
    /// File holding the access key (its content without a trailing newline); also CSM_ACCESS_KEY.
    #[arg(long, value_name = "FILE", global = true)]
    pub key_file: Option<PathBuf>,
    /// 1 = AES-256 (the default when a response omits encryptType), 2 = AES-128.
    #[arg(long, value_name = "1|2", default_value = "1", global = true)]
    pub encrypt_type: String,
}

#[derive(Debug, Subcommand)]
pub enum CryptoAction {
    /// Print the AES key derived from the access key (hex).
    DeriveKey {
        #[command(flatten)]
        key: CryptoKey,
    },
    /// Encrypt VALUE: prints the 16-character IV followed by Base64.
    Encrypt {
        #[command(flatten)]
        key: CryptoKey,
        /// The IV string (16 ASCII characters); random alphanumerics when absent.
        #[arg(long, value_name = "IV")]
        iv: Option<String>,
        /// The plaintext; `-` reads it from standard input (one trailing newline dropped), so
        /// that a secret stays out of `ps` and shell history.
        value: String,
    },
    /// Decrypt VALUE (IV prefix + Base64): prints the plaintext.
    Decrypt {
        #[command(flatten)]
        key: CryptoKey,
        /// The ciphertext (surrounding whitespace and URL-encoding, as in a URL or access log,
        /// are undone); `-` reads it from standard input (one trailing newline dropped).
        value: String,
    },
    /// Make the 3072-bit RSA pair of a joint-operation (联营) app: register FILE.pub (SPKI
    /// PEM) with the marketplace, give FILE (PKCS#8 PEM) to `csm serve merchant
    /// --app-private-key` or your app, which decrypts applicationSync's clientSecret with it.
    #[command(after_help = "Examples:
  csm crypto rsa-keygen --out app.pem
  csm send applicationSync --endpoint URL --kit-key-file kit.key --app-public-key app.pem.pub")]
    RsaKeygen {
        /// Private key file to write (PKCS#8 PEM, 0600); the public key goes to FILE.pub.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace existing key files.
        #[arg(long)]
        force: bool,
    },
}

fn rsa_keygen(g: &GlobalArgs, out: &std::path::Path, force: bool) -> Result<Exit> {
    let pub_path = crate::license::keys::public_path(out);
    for p in [out, pub_path.as_path()] {
        if p.exists() && !force {
            return Err(CsmError::usage(format!(
                "--out {}: {} exists; pass --force to replace it",
                out.display(),
                p.display()
            )));
        }
    }
    // Before the key is made (seconds of work): a directory that is not there.
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir.filter(|d| !d.is_dir()) {
        return Err(CsmError::Config(format!(
            "--out {}: no directory {} to write the key pair into",
            out.display(),
            dir.display()
        )));
    }
    let key = rsa_oaep::generate()?;
    let private = rsa_oaep::private_pem(&key)?;
    let public = rsa_oaep::public_pem(&key.to_public_key())?;
    // Together: with --force, a failure must not leave a new private key beside an old public one.
    crate::files::write_atomic_all(&[
        (out, private.as_bytes(), true),
        (pub_path.as_path(), public.as_bytes(), false),
    ])?;
    if g.json {
        crate::output::print_json(&json!({
            "bits": rsa_oaep::MIN_BITS,
            "private_key_file": out.display().to_string(),
            "public_key_file": pub_path.display().to_string(),
            "public_key_pem": public,
        }));
    } else {
        crate::say!("{}", public.trim_end());
        if !g.quiet {
            eprintln!(
                "RSA {} bits: private key in {} (PKCS#8, 0600), public key in {} (register this one)",
                rsa_oaep::MIN_BITS,
                out.display(),
                pub_path.display()
            );
        }
    }
    Ok(Exit::Ok)
}

fn load(g: &GlobalArgs, k: &CryptoKey) -> Result<(crate::secret::Secret, EncryptType)> {
    let t = EncryptType::parse(&k.encrypt_type)
        .map_err(|e| CsmError::usage(format!("--encrypt-type: {e}")))?;
    let profile = config::active_profile(g.profile.as_deref())?;
    Ok((
        config::require_key(KeyRole::Basic, k.key_file.as_deref(), &profile)?,
        t,
    ))
}

/// How messages name the positional value of encrypt and decrypt.
const VALUE: &str = "VALUE";

/// The value as given, or standard input for `-` (claimed before the key is read, so that
/// `--key-file -` is refused naming VALUE). Like a key file, one trailing newline belongs to
/// the input, not to the value.
fn read_value(value: &str) -> Result<(String, bool)> {
    if !crate::files::is_stdin(Path::new(value)) {
        return Ok((value.to_string(), false));
    }
    crate::files::claim_stdin(VALUE)?;
    let text = crate::files::read_text(Path::new(value), crate::files::KEY_LIMIT, VALUE)?;
    let v = crate::secret::without_line_end(&text);
    if v.is_empty() {
        return Err(CsmError::usage(
            "VALUE -: standard input is empty; pipe the value in, e.g. `-- - < value.txt`",
        ));
    }
    Ok((v.to_string(), true))
}

fn decrypt(g: &GlobalArgs, key: &CryptoKey, value: &str) -> Result<String> {
    let (raw, from_stdin) = read_value(value)?;
    let mut ct = raw.trim().to_string();
    if let Some(d) = crate::protocol::v1::url_decoded_base64(&ct) {
        ct = d;
        if !g.quiet && !g.json {
            eprintln!("csm: note: VALUE was URL-encoded (%XX escapes); decrypting it URL-decoded");
        }
    }
    // From standard input the value was kept off the command line: not echoed either.
    let shown = if from_stdin {
        "VALUE -".to_string()
    } else {
        format!("VALUE {ct:?}")
    };
    v1_crypto::split_ciphertext(&ct).map_err(|e| CsmError::usage(format!("{shown}: {e}")))?;
    let (secret, t) = load(g, key)?;
    v1_crypto::decrypt(secret.expose(), t, &ct).map_err(|e| {
        let err = CsmError::CheckFailed(format!("{shown}: {e}"));
        // The usual mix-up: the value was encrypted with the other type.
        let other = match t {
            EncryptType::Aes256 => EncryptType::Aes128,
            EncryptType::Aes128 => EncryptType::Aes256,
        };
        if v1_crypto::decrypt(secret.expose(), other, &ct).is_ok() {
            err.with_hint(format!(
                "it decrypts with --encrypt-type {} ({}); pass that",
                other.code(),
                if other == EncryptType::Aes256 {
                    "AES-256"
                } else {
                    "AES-128"
                }
            ))
        } else {
            err
        }
    })
}

pub fn run(g: &GlobalArgs, a: CryptoArgs) -> Result<Exit> {
    let (out, field) = match &a.action {
        CryptoAction::RsaKeygen { out, force } => return rsa_keygen(g, out, *force),
        CryptoAction::DeriveKey { key } => {
            let (secret, t) = load(g, key)?;
            (
                to_hex(&v1_crypto::derive_key(secret.expose(), t)),
                "aes_key_hex",
            )
        }
        CryptoAction::Encrypt { key, iv, value } => {
            let (value, _) = read_value(value)?;
            let (secret, t) = load(g, key)?;
            let iv = iv.clone().unwrap_or_else(|| clock::alphanumeric(16));
            let ct = v1_crypto::encrypt(secret.expose(), t, &iv, &value)
                .map_err(|e| CsmError::usage(format!("--{e}")))?;
            (ct, "ciphertext")
        }
        CryptoAction::Decrypt { key, value } => (decrypt(g, key, value)?, "plaintext"),
    };
    if g.json {
        crate::output::print_json(&json!({ field: out }));
    } else {
        crate::say!("{out}");
    }
    Ok(Exit::Ok)
}
