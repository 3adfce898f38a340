//! RSA-OAEP for applicationSync's `clientSecret` (sso.md): the marketplace encrypts the secret
//! with the public key the seller registered (RSA, at least 3072 bits); the seller decrypts it
//! with the PKCS#8 private key. The docs name neither the OAEP digest nor the MGF1 hash, so
//! three readings exist; the default is what Java's `RSA/ECB/OAEPWithSHA-256AndMGF1Padding`
//! does (SHA-256 digest, MGF1 with SHA-1), empty label, Base64 ciphertext
//! (docs/protocol-decisions.md).

use super::ProtocolError;
use base64::Engine;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use sha1::Sha1;
use sha2::Sha256;
use std::sync::Arc;

/// The smallest key the marketplace accepts (zh-cn_topic_0070649434).
pub const MIN_BITS: usize = 3072;

/// One reading of the unpublished OAEP parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reading {
    /// SHA-256 digest, MGF1 with SHA-1: Java's `OAEPWithSHA-256AndMGF1Padding` (the default).
    Sha256Mgf1Sha1,
    /// SHA-256 digest and MGF1-SHA-256 (OpenSSL, Python, Go with SHA-256 throughout).
    Sha256,
    /// SHA-1 digest and MGF1-SHA-1 (`OAEPWithSHA-1AndMGF1Padding`, OpenSSL's default).
    Sha1,
}

impl Reading {
    /// Every reading, the default first: the order a decrypting merchant tries them in.
    pub const ALL: [Reading; 3] = [Reading::Sha256Mgf1Sha1, Reading::Sha256, Reading::Sha1];

    /// The name of `--oaep`.
    pub fn name(self) -> &'static str {
        match self {
            Reading::Sha256Mgf1Sha1 => "sha256-mgf1sha1",
            Reading::Sha256 => "sha256",
            Reading::Sha1 => "sha1",
        }
    }

    pub fn parse(s: &str) -> Option<Reading> {
        Self::ALL.into_iter().find(|r| r.name() == s)
    }

    fn padding(self) -> Oaep {
        match self {
            Reading::Sha256Mgf1Sha1 => Oaep::new_with_mgf_hash::<Sha256, Sha1>(),
            Reading::Sha256 => Oaep::new::<Sha256>(),
            Reading::Sha1 => Oaep::new::<Sha1>(),
        }
    }
}

/// The seller's registered public key and the reading the marketplace is taken to use.
#[derive(Debug, Clone)]
pub struct AppKey {
    pub key: Arc<RsaPublicKey>,
    pub reading: Reading,
}

impl AppKey {
    /// `plaintext` encrypted with fresh OAEP randomness, as Base64.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<String, ProtocolError> {
        encrypt(&self.key, self.reading, plaintext)
    }
}

fn bits(key: &RsaPublicKey) -> usize {
    key.n().bits()
}

fn check_size(key: &RsaPublicKey) -> Result<(), ProtocolError> {
    let n = bits(key);
    if n < MIN_BITS {
        return Err(ProtocolError::new(format!(
            "an RSA key of {n} bits; the marketplace requires at least {MIN_BITS} bits (make a pair with `csm crypto rsa-keygen`)"
        )));
    }
    Ok(())
}

/// A public key from PEM: SPKI (`BEGIN PUBLIC KEY`) or PKCS#1 (`BEGIN RSA PUBLIC KEY`);
/// refused below [`MIN_BITS`].
pub fn public_key_from_pem(pem: &str) -> Result<RsaPublicKey, ProtocolError> {
    let pem = pem.trim();
    let key = if pem.starts_with("-----BEGIN PUBLIC KEY-----") {
        RsaPublicKey::from_public_key_pem(pem)
            .map_err(|e| ProtocolError::new(format!("not an RSA SPKI public key ({e})")))?
    } else if pem.starts_with("-----BEGIN RSA PUBLIC KEY-----") {
        RsaPublicKey::from_pkcs1_pem(pem)
            .map_err(|e| ProtocolError::new(format!("not a PKCS#1 RSA public key ({e})")))?
    } else if pem.contains("PRIVATE KEY-----") {
        return Err(ProtocolError::new(
            "a private key; pass the public key (the FILE.pub of `csm crypto rsa-keygen`)",
        ));
    } else {
        return Err(ProtocolError::new(
            "not a PEM public key (expected -----BEGIN PUBLIC KEY----- or -----BEGIN RSA PUBLIC KEY-----)",
        ));
    };
    check_size(&key)?;
    Ok(key)
}

/// A private key from unencrypted PKCS#8 PEM (`BEGIN PRIVATE KEY`); refused below
/// [`MIN_BITS`]. Errors never quote the key.
pub fn private_key_from_pem(pem: &str) -> Result<RsaPrivateKey, ProtocolError> {
    let pem = pem.trim();
    if pem.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
        return Err(ProtocolError::new(
            "a PKCS#1 private key; PKCS#8 is required (convert with `openssl pkcs8 -topk8 -nocrypt -in FILE`)",
        ));
    }
    if pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return Err(ProtocolError::new(
            "an encrypted PKCS#8 private key; an unencrypted one is required (`openssl pkcs8 -topk8 -nocrypt`)",
        ));
    }
    if !pem.starts_with("-----BEGIN PRIVATE KEY-----") {
        return Err(ProtocolError::new(
            "not a PEM private key (expected -----BEGIN PRIVATE KEY-----, PKCS#8)",
        ));
    }
    let key = RsaPrivateKey::from_pkcs8_pem(pem)
        .map_err(|e| ProtocolError::new(format!("not an RSA PKCS#8 private key ({e})")))?;
    check_size(&key.to_public_key())?;
    Ok(key)
}

/// `plaintext` encrypted under `reading` with fresh randomness, as standard Base64.
pub fn encrypt(
    key: &RsaPublicKey,
    reading: Reading,
    plaintext: &[u8],
) -> Result<String, ProtocolError> {
    let ct = key
        .encrypt(&mut rand::rngs::OsRng, reading.padding(), plaintext)
        .map_err(|e| ProtocolError::new(format!("RSA-OAEP encryption failed: {e}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(ct))
}

/// The Base64 ciphertext decrypted under `reading`.
pub fn decrypt(
    key: &RsaPrivateKey,
    reading: Reading,
    ciphertext_b64: &str,
) -> Result<Vec<u8>, ProtocolError> {
    let ct = decode(key, ciphertext_b64)?;
    key.decrypt(reading.padding(), &ct).map_err(|_| {
        ProtocolError::new(format!(
            "does not decrypt with this private key under OAEP {}",
            reading.name()
        ))
    })
}

fn decode(key: &RsaPrivateKey, ciphertext_b64: &str) -> Result<Vec<u8>, ProtocolError> {
    let ct = base64::engine::general_purpose::STANDARD
        .decode(ciphertext_b64.trim())
        .map_err(|_| ProtocolError::new("not standard Base64"))?;
    if ct.len() != key.size() {
        return Err(ProtocolError::new(format!(
            "{} bytes after Base64; a ciphertext for this {}-bit key has {}",
            ct.len(),
            bits(&key.to_public_key()),
            key.size()
        )));
    }
    Ok(ct)
}

/// Tries every reading, the default first: the one that decrypts and the plaintext.
pub fn decrypt_any(
    key: &RsaPrivateKey,
    ciphertext_b64: &str,
) -> Result<(Reading, Vec<u8>), ProtocolError> {
    let ct = decode(key, ciphertext_b64)?;
    Reading::ALL
        .into_iter()
        .find_map(|r| key.decrypt(r.padding(), &ct).ok().map(|p| (r, p)))
        .ok_or_else(|| {
            ProtocolError::new(
                "does not decrypt with this private key under any OAEP reading (sha256-mgf1sha1, sha256, sha1)",
            )
        })
}

/// A fresh [`MIN_BITS`]-bit pair (a few seconds).
pub fn generate() -> Result<RsaPrivateKey, ProtocolError> {
    RsaPrivateKey::new(&mut rand::rngs::OsRng, MIN_BITS)
        .map_err(|e| ProtocolError::new(format!("RSA key generation failed: {e}")))
}

/// The private key as PKCS#8 PEM (LF line ends).
pub fn private_pem(key: &RsaPrivateKey) -> Result<zeroize::Zeroizing<String>, ProtocolError> {
    key.to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| ProtocolError::new(format!("cannot encode the private key: {e}")))
}

/// The public key as SPKI PEM (`BEGIN PUBLIC KEY`), what the seller registers.
pub fn public_pem(key: &RsaPublicKey) -> Result<String, ProtocolError> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|e| ProtocolError::new(format!("cannot encode the public key: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_have_names() {
        for r in Reading::ALL {
            assert_eq!(Reading::parse(r.name()), Some(r));
        }
        assert_eq!(Reading::parse("md5"), None);
        assert_eq!(Reading::ALL[0], Reading::Sha256Mgf1Sha1);
    }

    #[test]
    fn wrong_pem_kinds_are_named() {
        let e = public_key_from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
            .unwrap_err();
        assert!(e.0.contains("a private key"), "{e}");
        let e = private_key_from_pem("-----BEGIN RSA PRIVATE KEY-----\n").unwrap_err();
        assert!(e.0.contains("PKCS#8 is required"), "{e}");
        let e = private_key_from_pem("hello").unwrap_err();
        assert!(e.0.contains("not a PEM private key"), "{e}");
    }
}
