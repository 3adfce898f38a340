//! The rules every endpoint URL flag follows, and what counts as this machine.

use crate::error::{CsmError, Result};
use reqwest::Url;

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

#[cfg(test)]
mod tests {
    use super::*;

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
