//! The TLS side of the policy, shared by reqwest and the raw reply reader: rustls with the
//! ring provider, TLS 1.2 or 1.3 only, server certificates verified against the webpki roots
//! (the ones reqwest ships) plus an optional extra CA.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use std::sync::Arc;

/// The certificates of a PEM file; an error when it holds none or one is not PEM/DER.
pub fn parse_ca(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate ({e})"))?;
    if certs.is_empty() {
        return Err("not a PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(certs)
}

/// The webpki roots, plus `ca_pem`'s certificates when given.
fn roots(ca_pem: Option<&[u8]>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = ca_pem {
        for cert in parse_ca(pem)? {
            roots
                .add(cert)
                .map_err(|e| format!("not a usable CA certificate ({e})"))?;
        }
    }
    Ok(roots)
}

/// An extra CA (`--ca-file`) is PEM and usable as a trust anchor; the error says why not.
pub fn check_ca(pem: &[u8]) -> Result<(), String> {
    roots(Some(pem)).map(|_| ())
}

/// The client configuration: webpki roots, plus `ca_pem`'s certificates when given.
pub fn client_config(ca_pem: Option<&[u8]>) -> Result<ClientConfig, String> {
    let roots = roots(ca_pem).map_err(|e| format!("--ca-file: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_must_hold_a_certificate() {
        assert!(parse_ca(b"not pem").is_err());
        assert!(parse_ca(b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n").is_err());
        let fixture = include_bytes!("../../tests/fixtures/test-only-localhost.pem");
        assert_eq!(parse_ca(fixture).unwrap().len(), 1);
        assert!(client_config(Some(fixture)).is_ok());
        assert!(check_ca(fixture).is_ok());
        assert!(client_config(Some(b"x"))
            .unwrap_err()
            .starts_with("--ca-file"));
    }
}
