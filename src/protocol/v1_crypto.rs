//! V1 sensitive-field encryption: AES-CBC-PKCS5 with the key Java's SHA1PRNG derives
//! from the access key (saas-callbacks.md §3.5). The carry is signed, as in Java.

use super::ProtocolError;
use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine;
use sha1::{Digest, Sha1};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncryptType {
    /// `"1"` (and the default when absent): AES-256-CBC.
    Aes256,
    /// `"2"`: AES-128-CBC.
    Aes128,
}

impl EncryptType {
    pub fn parse(v: &str) -> Result<Self, ProtocolError> {
        match v {
            "1" => Ok(EncryptType::Aes256),
            "2" => Ok(EncryptType::Aes128),
            _ => Err(ProtocolError::new(format!(
                "encryptType {v:?}: must be \"1\" (AES-256) or \"2\" (AES-128)"
            ))),
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            EncryptType::Aes256 => "1",
            EncryptType::Aes128 => "2",
        }
    }

    pub fn key_len(self) -> usize {
        match self {
            EncryptType::Aes256 => 32,
            EncryptType::Aes128 => 16,
        }
    }
}

/// The first `len` bytes of Sun's SHA1PRNG output seeded with `seed` before first use.
pub fn sha1prng(seed: &[u8], len: usize) -> Vec<u8> {
    let mut state: [u8; 20] = Sha1::digest(seed).into();
    let mut out = Vec::with_capacity(len + 20);
    while out.len() < len {
        let block: [u8; 20] = Sha1::digest(state).into();
        out.extend_from_slice(&block);
        update_state(&mut state, &block);
    }
    out.truncate(len);
    out
}

/// state := state + block + 1, byte by byte from index 0, with Java's signed bytes.
fn update_state(state: &mut [u8; 20], block: &[u8; 20]) {
    let mut carry: i32 = 1;
    let mut changed = false;
    for i in 0..20 {
        let v = state[i] as i8 as i32 + block[i] as i8 as i32 + carry;
        let t = (v & 0xFF) as u8;
        changed |= state[i] != t;
        state[i] = t;
        carry = v >> 8;
    }
    if !changed {
        state[0] = state[0].wrapping_add(1);
    }
}

pub fn derive_key(access_key: &str, t: EncryptType) -> Vec<u8> {
    sha1prng(access_key.as_bytes(), t.key_len())
}

/// `iv` must be 16 ASCII characters; the result is the IV string followed by Base64.
pub fn encrypt(
    access_key: &str,
    t: EncryptType,
    iv: &str,
    plaintext: &str,
) -> Result<String, ProtocolError> {
    if iv.len() != 16 || !iv.is_ascii() {
        return Err(ProtocolError::new(format!(
            "iv {iv:?}: must be exactly 16 ASCII characters"
        )));
    }
    let key = derive_key(access_key, t);
    let ct = match t {
        EncryptType::Aes256 => cbc::Encryptor::<aes::Aes256>::new_from_slices(&key, iv.as_bytes())
            .expect("key and IV lengths are fixed")
            .encrypt_padded_vec_mut::<Pkcs7>(plaintext.as_bytes()),
        EncryptType::Aes128 => cbc::Encryptor::<aes::Aes128>::new_from_slices(&key, iv.as_bytes())
            .expect("key and IV lengths are fixed")
            .encrypt_padded_vec_mut::<Pkcs7>(plaintext.as_bytes()),
    };
    Ok(format!(
        "{iv}{}",
        base64::engine::general_purpose::STANDARD.encode(ct)
    ))
}

/// Splits a ciphertext into its IV string and the decoded cipher bytes, or says which part
/// is malformed (a shape problem, as opposed to a wrong key).
pub fn split_ciphertext(ciphertext: &str) -> Result<(&str, Vec<u8>), ProtocolError> {
    let (iv, rest) = match (ciphertext.get(..16), ciphertext.get(16..)) {
        (Some(iv), Some(rest)) if !rest.is_empty() => (iv, rest),
        _ => {
            return Err(ProtocolError::new(
                "ciphertext: must be a 16-character IV followed by Base64",
            ))
        }
    };
    let data = base64::engine::general_purpose::STANDARD
        .decode(rest)
        .map_err(|e| {
            ProtocolError::new(format!(
                "ciphertext: the part after the IV is not Base64 ({e})"
            ))
        })?;
    Ok((iv, data))
}

pub fn decrypt(
    access_key: &str,
    t: EncryptType,
    ciphertext: &str,
) -> Result<String, ProtocolError> {
    let (iv, data) = split_ciphertext(ciphertext)?;
    let key = derive_key(access_key, t);
    let bad = |_| {
        ProtocolError::new(format!(
            "ciphertext: does not decrypt with encryptType {} (wrong key, wrong encryptType, or corrupted)",
            t.code()
        ))
    };
    let pt = match t {
        EncryptType::Aes256 => cbc::Decryptor::<aes::Aes256>::new_from_slices(&key, iv.as_bytes())
            .expect("key and IV lengths are fixed")
            .decrypt_padded_vec_mut::<Pkcs7>(&data)
            .map_err(bad)?,
        EncryptType::Aes128 => cbc::Decryptor::<aes::Aes128>::new_from_slices(&key, iv.as_bytes())
            .expect("key and IV lengths are fixed")
            .decrypt_padded_vec_mut::<Pkcs7>(&data)
            .map_err(bad)?,
    };
    String::from_utf8(pt)
        .map_err(|_| ProtocolError::new("ciphertext: decrypts to bytes that are not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::hmac::to_hex;

    const KEY: &str = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";

    #[test]
    fn spec_keys_and_ciphertexts() {
        assert_eq!(
            to_hex(&derive_key(KEY, EncryptType::Aes256)),
            "98ace25cc513876be5a4d6f3b534db90e2ea597b35fe217e2406163abed41d04"
        );
        assert_eq!(
            encrypt(KEY, EncryptType::Aes128, "A1b2C3d4E5f6G7h8", "admin").unwrap(),
            "A1b2C3d4E5f6G7h8gunXaFVLYwDgiWhVqy+HVw=="
        );
        assert_eq!(
            decrypt(
                KEY,
                EncryptType::Aes256,
                "A1b2C3d4E5f6G7h8wO6cpbpQJ3J7b6YMjk0eJQ=="
            )
            .unwrap(),
            "admin"
        );
    }
}
