//! Ed25519 signing keys, their key ids, key file lines and the keyring used to validate.
//!
//! Key files are one line each:
//! `csm-license-public-key:<key id>:<base64 of 32 bytes>` and
//! `csm-license-private-key:<key id>:<base64 of the 32-byte seed>`.
//! The key id is the first 4 bytes of SHA-256 over a label and the public key, written as
//! 8 hex digits; it travels inside every code, so old keys can stay in the keyring after a
//! rotation and the right one is picked without trying them all.
//!
//! Short codes are checked with a separate random secret,
//! `csm-license-short-secret:<key id>:<base64 of 32 bytes>`, never with the private key.
//!
//! Key files: keygen writes FILE (private, 0600), FILE.pub and FILE.short (0600) together;
//! the loaders at the end read them back, naming the flag a file came from in messages.

use crate::error::{CsmError, Result};
use crate::files;
use crate::protocol::hmac::to_hex;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};

pub const PUBLIC_TAG: &str = "csm-license-public-key";
pub const PRIVATE_TAG: &str = "csm-license-private-key";
pub const SHORT_TAG: &str = "csm-license-short-secret";
/// Prefixed to the payload before signing, so a csm signature means nothing elsewhere.
pub const SIGN_CONTEXT: &[u8] = b"csm-license-v1:";

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 4]);

impl KeyId {
    pub fn of(public: &VerifyingKey) -> KeyId {
        let mut h = Sha256::new();
        h.update(b"csm-license-key-id:");
        h.update(public.as_bytes());
        let d = h.finalize();
        KeyId([d[0], d[1], d[2], d[3]])
    }

    pub fn parse(s: &str) -> Option<KeyId> {
        let b = hex::decode(s).ok()?;
        Some(KeyId(b.try_into().ok()?))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_hex(&self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A private key with its id. Debug never shows the key.
#[derive(Clone)]
pub struct PrivateKey {
    pub id: KeyId,
    pub key: SigningKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, redacted)", self.id)
    }
}

impl PrivateKey {
    pub fn from_seed(seed: [u8; 32]) -> PrivateKey {
        let key = SigningKey::from_bytes(&seed);
        PrivateKey {
            id: KeyId::of(&key.verifying_key()),
            key,
        }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// The private key file line. Only written to a 0600 file, never printed.
    pub fn to_line(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(self.key.to_bytes());
        format!("{PRIVATE_TAG}:{}:{b64}", self.id)
    }

    pub fn sign(&self, payload: &[u8]) -> [u8; 64] {
        let mut msg = Vec::with_capacity(SIGN_CONTEXT.len() + payload.len());
        msg.extend_from_slice(SIGN_CONTEXT);
        msg.extend_from_slice(payload);
        self.key.sign(&msg).to_bytes()
    }
}

/// The symmetric secret of short codes, apart from the Ed25519 key so that software checking
/// short codes never holds the key that signs full codes. It carries the key id of the pair
/// it was made with; short codes name that id. Whoever holds it can also mint short codes.
#[derive(Clone)]
pub struct ShortSecret {
    pub id: KeyId,
    pub secret: [u8; 32],
}

impl fmt::Debug for ShortSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShortSecret({}, redacted)", self.id)
    }
}

impl ShortSecret {
    /// The short-secret file line. Only written to a 0600 file, never printed.
    pub fn to_line(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(self.secret);
        format!("{SHORT_TAG}:{}:{b64}", self.id)
    }
}

/// Parses a short-secret line. Error messages never contain the secret.
pub fn parse_short_line(line: &str) -> Result<ShortSecret, String> {
    let (kid, secret) = split_line(line.trim(), SHORT_TAG)
        .map_err(|e| e.replace("Ed25519 needs 32", "a short secret has 32"))?;
    let id = KeyId::parse(kid).ok_or_else(|| format!("key id {kid:?} is not 8 hex digits"))?;
    Ok(ShortSecret { id, secret })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub id: KeyId,
    pub key: VerifyingKey,
}

impl PublicKey {
    pub fn to_line(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(self.key.as_bytes());
        format!("{PUBLIC_TAG}:{}:{b64}", self.id)
    }

    pub fn verify(&self, payload: &[u8], signature: &[u8; 64]) -> bool {
        let mut msg = Vec::with_capacity(SIGN_CONTEXT.len() + payload.len());
        msg.extend_from_slice(SIGN_CONTEXT);
        msg.extend_from_slice(payload);
        self.key
            .verify(&msg, &Signature::from_bytes(signature))
            .is_ok()
    }
}

fn split_line<'a>(line: &'a str, tag: &str) -> Result<(&'a str, [u8; 32]), String> {
    let rest = line
        .strip_prefix(tag)
        .and_then(|r| r.strip_prefix(':'))
        .ok_or_else(|| format!("must start with {tag}:"))?;
    let (kid, b64) = rest
        .split_once(':')
        .ok_or_else(|| format!("must be {tag}:<key id>:<base64 key>"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| "the key is not valid base64".to_string())?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("the key is {} bytes, Ed25519 needs 32", b.len()))?;
    Ok((kid, arr))
}

pub fn parse_public_line(line: &str) -> Result<PublicKey, String> {
    let (kid, bytes) = split_line(line.trim(), PUBLIC_TAG)?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| "the key is not a valid Ed25519 public key".to_string())?;
    let id = KeyId::of(&key);
    if KeyId::parse(kid) != Some(id) {
        return Err(format!(
            "key id {kid:?} does not belong to this key (it is {id})"
        ));
    }
    Ok(PublicKey { id, key })
}

/// Parses a private key line. Error messages never contain the key material.
pub fn parse_private_line(line: &str) -> Result<PrivateKey, String> {
    let (kid, seed) = split_line(line.trim(), PRIVATE_TAG)?;
    let k = PrivateKey::from_seed(seed);
    if KeyId::parse(kid) != Some(k.id) {
        return Err(format!(
            "key id {kid:?} does not belong to this key (it is {})",
            k.id
        ));
    }
    Ok(k)
}

/// Public keys (and short-code secrets) known to a validation.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    pub public: Vec<PublicKey>,
    pub short: Vec<ShortSecret>,
    /// `--public-key` files that hold a private key line (its public half is used): worth a
    /// warning, since a file given as public is the kind that ships with a product.
    pub private_files: Vec<PathBuf>,
}

impl Keyring {
    /// Adds every key line of a key file; blank lines and `#` comments are skipped.
    /// A private key line also contributes its public key.
    pub fn add_text(&mut self, text: &str) -> Result<(), String> {
        let mut n = 0;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let r = if line.starts_with(PRIVATE_TAG) {
                parse_private_line(line).map(|k| self.public.push(k.public()))
            } else if line.starts_with(SHORT_TAG) {
                parse_short_line(line).map(|k| self.short.push(k))
            } else {
                parse_public_line(line).map(|k| self.public.push(k))
            };
            r.map_err(|e| format!("line {}: {e}", i + 1))?;
            n += 1;
        }
        if n == 0 {
            return Err(format!(
                "no key line (expected {PUBLIC_TAG}:<key id>:<base64>)"
            ));
        }
        Ok(())
    }

    pub fn public_for(&self, id: KeyId) -> Option<&PublicKey> {
        self.public.iter().find(|k| k.id == id)
    }

    pub fn short_for(&self, id: KeyId) -> Option<&ShortSecret> {
        self.short.iter().find(|k| k.id == id)
    }
}

// ---------------------------------------------------------------- key files

/// `FILE` + `suffix`, next to FILE.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.to_path_buf().into_os_string();
    p.push(suffix);
    PathBuf::from(p)
}

/// Where keygen puts the public key of the private key file `private`.
pub fn public_path(private: &Path) -> PathBuf {
    sibling(private, ".pub")
}

/// Where keygen puts the short secret made with the private key file `private`.
pub fn short_path(private: &Path) -> PathBuf {
    sibling(private, ".short")
}

/// A new key pair and its short secret. The secret is random, not derived from the seed:
/// software that holds it must not learn the private key.
pub fn generate() -> Result<(PrivateKey, ShortSecret)> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed)
        .map_err(|e| CsmError::Config(format!("no randomness for a key: {e}")))?;
    let key = PrivateKey::from_seed(seed);
    let mut secret = [0u8; 32];
    getrandom::getrandom(&mut secret)
        .map_err(|e| CsmError::Config(format!("no randomness for a short secret: {e}")))?;
    let short = ShortSecret { id: key.id, secret };
    Ok((key, short))
}

/// Writes the three key files of `key` (`out`, `out.pub`, `out.short`); existing ones only
/// with `force`. The private key and the short secret are created 0600.
pub fn write_key_files(
    out: &Path,
    key: &PrivateKey,
    short: &ShortSecret,
    force: bool,
) -> Result<()> {
    let pub_path = public_path(out);
    let short_path = short_path(out);
    for p in [out, &pub_path, &short_path] {
        if p.exists() && !force {
            return Err(CsmError::usage(format!(
                "--out {}: {} exists; pass --force to replace it",
                out.display(),
                p.display()
            )));
        }
    }
    let private_text = format!("{}\n", key.to_line());
    let short_text = format!("{}\n", short.to_line());
    let public_text = format!("{}\n", key.public().to_line());
    // Together: with --force, a failure must not leave a new private key beside an old
    // public key or short secret.
    files::write_atomic_all(&[
        (out, private_text.as_bytes(), true),
        (short_path.as_path(), short_text.as_bytes(), true),
        (pub_path.as_path(), public_text.as_bytes(), false),
    ])
}

/// The first non-blank line of a key file.
fn first_line(text: &str) -> &str {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or("")
}

/// The files `csm license keygen` writes: line tag, what it holds, file, the flag that takes it.
const KINDS: [(&str, &str, &str, &str); 3] = [
    (PUBLIC_TAG, "a public key", "FILE.pub", "--public-key"),
    (PRIVATE_TAG, "a private key", "FILE", "--private-key"),
    (
        SHORT_TAG,
        "a short-code secret",
        "FILE.short",
        "--short-secret",
    ),
];

/// What a key line is when it is not a `want` line: another file of keygen's and the flag
/// that takes it, a PEM key, or a bare base64 key. None when it is none of those (the parser
/// says what is wrong). Never quotes the line: it may be a secret.
fn mixup(line: &str, want: &str) -> Option<String> {
    let line = line.trim();
    let (_, noun, file, _) = KINDS.iter().find(|k| k.0 == want)?;
    if let Some((_, is, its, flag)) = KINDS.iter().find(|k| k.0 != want && line.starts_with(k.0)) {
        return Some(format!(
            "this is {is} ({its} of `csm license keygen`), not {noun} ({file}); pass it with {flag}"
        ));
    }
    let wanted = format!("{noun} ({file} of `csm license keygen`)");
    if line.starts_with("-----BEGIN") {
        return Some(format!(
            "this is a PEM key (RSA, as `csm crypto rsa-keygen` writes for --app-public-key), not {wanted}"
        ));
    }
    let b64 = base64::engine::general_purpose::STANDARD.decode(line);
    if b64.is_ok_and(|b| b.len() == 32) {
        return Some(format!(
            "this is a bare base64 key without its {want}:<key id>: prefix; give the whole {file} `csm license keygen` wrote"
        ));
    }
    None
}

/// Reads a private key file (`--private-key`).
pub fn read_private_key(path: &Path) -> Result<PrivateKey> {
    let text = files::read_text(path, files::KEY_LIMIT, "--private-key")?;
    let line = first_line(&text);
    parse_private_line(line).map_err(|e| {
        CsmError::usage(format!(
            "--private-key {}: not a csm private key file: {}",
            path.display(),
            mixup(line, PRIVATE_TAG).unwrap_or(e)
        ))
    })
}

/// Reads a short-secret file; `flag` names it in messages.
pub fn read_short_secret(path: &Path, flag: &str) -> Result<ShortSecret> {
    let text = files::read_text(path, files::KEY_LIMIT, flag)?;
    let line = first_line(&text);
    parse_short_line(line).map_err(|e| {
        CsmError::usage(format!(
            "{flag} {}: not a csm short-secret file: {}",
            path.display(),
            mixup(line, SHORT_TAG).unwrap_or(e)
        ))
    })
}

/// The short secret keygen wrote next to the private key file `private`.
pub fn read_short_secret_beside(private: &Path) -> Result<ShortSecret> {
    let p = short_path(private);
    if !p.exists() {
        return Err(CsmError::usage(format!(
            "--short: {} does not exist; pass --short-secret FILE (keys made before csm wrote FILE.short need a new `csm license keygen`)",
            p.display()
        )));
    }
    read_short_secret(&p, "--short-secret")
}

/// The keyring of `--public-key` and `--short-secret` files.
pub fn load_keyring(public: &[PathBuf], short: &[PathBuf]) -> Result<Keyring> {
    let mut ring = Keyring::default();
    for p in public {
        let text = files::read_text(p, files::KEY_LIMIT, "--public-key")?;
        let shown = format!("--public-key {}", p.display());
        // A file of short secrets alone would only check short codes and leave full codes
        // `unknown-key-id`; a keyring holding public keys may carry short secrets beside
        // them; a private key is taken (its public half) with a warning.
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let has_key = lines
            .iter()
            .any(|l| l.starts_with(PUBLIC_TAG) || l.starts_with(PRIVATE_TAG));
        let mut others = lines
            .iter()
            .filter(|l| !(l.starts_with(PRIVATE_TAG) || has_key && l.starts_with(SHORT_TAG)));
        if let Some(m) = others.find_map(|l| mixup(l, PUBLIC_TAG)) {
            return Err(CsmError::usage(format!(
                "{shown}: not a csm public key file: {m}"
            )));
        }
        ring.add_text(&text)
            .map_err(|e| CsmError::usage(format!("{shown}: {e}")))?;
        if text.lines().any(|l| l.trim().starts_with(PRIVATE_TAG)) {
            ring.private_files.push(p.clone());
        }
    }
    for p in short {
        ring.short.push(read_short_secret(p, "--short-secret")?);
    }
    Ok(ring)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_ids_match() {
        let k = PrivateKey::from_seed([7; 32]);
        let p = parse_public_line(&k.public().to_line()).unwrap();
        assert_eq!(p.id, k.id);
        let k2 = parse_private_line(&k.to_line()).unwrap();
        assert_eq!(k2.key.to_bytes(), k.key.to_bytes());
        assert!(!format!("{k:?}").contains(&k.to_line()[30..]));
        let sig = k.sign(b"abc");
        assert!(p.verify(b"abc", &sig));
        assert!(!p.verify(b"abd", &sig));
        let bad = k.public().to_line().replace(&k.id.to_string(), "00000000");
        assert!(parse_public_line(&bad)
            .unwrap_err()
            .contains("does not belong"));
    }

    #[test]
    fn a_key_id_is_eight_hex_digits_and_nothing_else() {
        assert_eq!(
            KeyId::parse("1234abCD"),
            Some(KeyId([0x12, 0x34, 0xab, 0xcd]))
        );
        for bad in ["0x1234abcd", "1234abc", "1234abcd0", "1234abcg", ""] {
            assert_eq!(KeyId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn short_secret_lines_round_trip_and_stay_redacted() {
        let k = PrivateKey::from_seed([7; 32]);
        let s = ShortSecret {
            id: k.id,
            secret: [9; 32],
        };
        let line = s.to_line();
        assert!(line.starts_with("csm-license-short-secret:"));
        let back = parse_short_line(&line).unwrap();
        assert_eq!((back.id, back.secret), (s.id, s.secret));
        let b64 = line.rsplit(':').next().unwrap();
        assert!(!format!("{s:?}").contains(b64));
        // A short secret is not an Ed25519 key and vice versa.
        assert!(parse_private_line(&line).is_err());
        assert!(parse_short_line(&k.to_line()).is_err());
        let mut ring = Keyring::default();
        ring.add_text(&line).unwrap();
        assert!(ring.short_for(k.id).is_some() && ring.public.is_empty());
    }

    #[test]
    fn key_files_are_written_together_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("seller.key");
        let (key, short) = generate().unwrap();
        write_key_files(&out, &key, &short, false).unwrap();
        let again = write_key_files(&out, &key, &short, false).unwrap_err();
        assert!(again.to_string().contains("pass --force"), "{again}");
        assert_eq!(read_private_key(&out).unwrap().id, key.id);
        let s = read_short_secret_beside(&out).unwrap();
        assert_eq!((s.id, s.secret), (short.id, short.secret));
        let ring = load_keyring(&[public_path(&out)], &[short_path(&out)]).unwrap();
        assert!(ring.public_for(key.id).is_some() && ring.short_for(key.id).is_some());
        // A public key is not a private key; the message names the flag, never the key.
        let e = read_private_key(&public_path(&out))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--private-key "), "{e}");
        let e = read_short_secret_beside(&dir.path().join("other.key")).unwrap_err();
        assert!(
            e.to_string().contains("other.key.short does not exist"),
            "{e}"
        );
    }
}
