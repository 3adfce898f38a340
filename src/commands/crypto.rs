//! `csm crypto derive-key|encrypt|decrypt`: V1 sensitive-field encryption.

use crate::catalog::KeyRole;
use crate::cli::GlobalArgs;
use crate::clock;
use crate::config;
use crate::error::{CsmError, Exit, Result};
use crate::protocol::v1_crypto::{self, EncryptType};
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;

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
        /// The plaintext.
        value: String,
    },
    /// Decrypt VALUE (IV prefix + Base64): prints the plaintext.
    Decrypt {
        #[command(flatten)]
        key: CryptoKey,
        /// The ciphertext.
        value: String,
    },
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

pub fn run(g: &GlobalArgs, a: CryptoArgs) -> Result<Exit> {
    let (out, field) = match &a.action {
        CryptoAction::DeriveKey { key } => {
            let (secret, t) = load(g, key)?;
            (
                hex::encode(v1_crypto::derive_key(secret.expose(), t)),
                "aes_key_hex",
            )
        }
        CryptoAction::Encrypt { key, iv, value } => {
            let (secret, t) = load(g, key)?;
            let iv = iv.clone().unwrap_or_else(|| clock::alphanumeric(16));
            let ct = v1_crypto::encrypt(secret.expose(), t, &iv, value)
                .map_err(|e| CsmError::usage(format!("--{e}")))?;
            (ct, "ciphertext")
        }
        CryptoAction::Decrypt { key, value } => {
            v1_crypto::split_ciphertext(value)
                .map_err(|e| CsmError::usage(format!("VALUE {value:?}: {e}")))?;
            let (secret, t) = load(g, key)?;
            let pt = v1_crypto::decrypt(secret.expose(), t, value)
                .map_err(|e| CsmError::CheckFailed(format!("VALUE {value:?}: {e}")))?;
            (pt, "plaintext")
        }
    };
    if g.json {
        crate::output::print_json(&json!({ field: out }));
    } else {
        crate::say!("{out}");
    }
    Ok(Exit::Ok)
}
