//! Why no reply came, from the errors' types: reqwest's and hyper's predicates, a
//! `rustls::Error` anywhere in the chain, the io `ErrorKind`. Messages are only shown.

use std::error::Error as StdError;
use std::io;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetKind {
    /// DNS failure or connection refused: nothing is listening.
    Connect,
    Timeout,
    Tls,
    /// The connection was closed or reset before a complete reply head.
    Reset,
    /// Something that is not HTTP came back.
    Protocol,
}

impl NetKind {
    /// The kind's name in reports (`--json` error counts).
    pub fn id(self) -> &'static str {
        match self {
            NetKind::Connect => "connect",
            NetKind::Timeout => "timeout",
            NetKind::Tls => "tls",
            NetKind::Reset => "reset",
            NetKind::Protocol => "protocol",
        }
    }

    /// What failed, as a message starts (`could not connect: …`).
    pub fn what_failed(self) -> &'static str {
        match self {
            NetKind::Connect => "could not connect",
            NetKind::Timeout => "no answer in time",
            NetKind::Tls => "TLS handshake failed",
            NetKind::Reset => "connection closed before the answer was whole",
            NetKind::Protocol => "not an HTTP answer",
        }
    }

    /// No HTTP reply came at all (DNS, connect, TLS, timeout, reset): when that happens to
    /// the first call, the endpoint is unreachable (exit 4). `Protocol` means something did
    /// answer, so it is judged as a failed check instead.
    pub fn is_unreachable(self) -> bool {
        !matches!(self, NetKind::Protocol)
    }
}

#[derive(Debug, Clone)]
pub struct NetFailure {
    pub kind: NetKind,
    pub message: String,
    /// What to do, when where it failed says more than its kind (a proxy that refused the
    /// tunnel is no endpoint to check the port of).
    pub fix: Option<&'static str>,
    /// It failed before the request was written (connect, tunnel, TLS handshake, a timeout
    /// among them): the other side cannot have had it. Set by the raw client only.
    pub unsent: bool,
}

impl NetFailure {
    pub fn new(kind: NetKind, message: impl Into<String>) -> NetFailure {
        NetFailure {
            kind,
            message: message.into(),
            fix: None,
            unsent: false,
        }
    }

    /// The same failure, known to have come before the request was written.
    pub fn before_sending(self) -> NetFailure {
        NetFailure {
            unsent: true,
            ..self
        }
    }

    /// What to do about a proxy that refused the `CONNECT` tunnel, by its answer.
    pub fn proxy_refused_fix(status: Option<u16>) -> &'static str {
        if status == Some(407) {
            "the proxy wants credentials: write them into its URL (http://user:password@host:port)"
        } else {
            "the proxy refused the tunnel to this host: ask for it to be allowed, or list the host in NO_PROXY if it is reached without the proxy"
        }
    }

    /// The same failure with the fix for a refused tunnel, when hyper-util's tunnel said so:
    /// its error type is private, its text is not.
    fn with_tunnel_fix(self) -> NetFailure {
        let status = if self
            .message
            .contains("tunnel error: proxy authorization required")
        {
            Some(407)
        } else if self.message.contains("tunnel error: unsuccessful") {
            None
        } else {
            return self;
        };
        self.with_fix(Self::proxy_refused_fix(status))
    }

    pub fn with_fix(self, fix: &'static str) -> NetFailure {
        NetFailure {
            fix: Some(fix),
            ..self
        }
    }

    /// The same failure, its message prefixed with where it happened.
    /// What to do about [`NetFailure::plain_http_behind_https`].
    pub const PLAIN_HTTP_FIX: &'static str =
        "the endpoint answers in plain HTTP, not TLS: use an http:// address (or serve TLS there)";

    /// A TLS handshake answered in plain HTTP: rustls reads the reply to its hello as a
    /// record of an unknown type. The fix is the address's scheme, not the certificate.
    pub fn plain_http_behind_https(&self) -> bool {
        self.kind == NetKind::Tls && self.message.contains("InvalidContentType")
    }

    /// What to do about a failed TLS handshake, by what rustls found (its error, as the
    /// message keeps it): the usual staging mistakes get their own fix.
    pub fn tls_fix(&self) -> &'static str {
        let m = &self.message;
        if self.plain_http_behind_https() {
            Self::PLAIN_HTTP_FIX
        } else if m.contains("CaUsedAsEndEntity") {
            "the server presents a CA certificate as its own (a bare `openssl req -x509` makes one): issue a server certificate from that CA, serve it, and pass the CA with --ca-file"
        } else if m.contains("UnknownIssuer") {
            "the certificate's issuer is not trusted here: pass the issuing CA with --ca-file (a private CA), or serve a certificate from a public CA"
        } else if m.contains("NotValidForName") {
            "the certificate is not for this host name: call the name it was issued for, or issue one for this name"
        } else if m.contains("Expired") {
            "the certificate has expired: renew it"
        } else {
            "serve TLS 1.2 or newer with a certificate for this host name (--ca-file trusts a private CA)"
        }
    }

    pub fn within(self, what: &str) -> NetFailure {
        NetFailure {
            message: format!("{what}: {}", self.message),
            ..self
        }
    }
}

/// The kind an io error stands for, looking inside it for a TLS error first.
pub fn io_kind(e: &io::Error) -> NetKind {
    io_kind_told(e).unwrap_or(NetKind::Reset)
}

/// The kind an io error's own kind tells; None for one of no telling kind (`Other`,
/// uncategorized: a failed DNS lookup is one).
fn io_kind_told(e: &io::Error) -> Option<NetKind> {
    use io::ErrorKind as K;
    if e.get_ref().is_some_and(|inner| tls_in(inner)) {
        return Some(NetKind::Tls);
    }
    Some(match e.kind() {
        K::TimedOut | K::WouldBlock => NetKind::Timeout,
        K::ConnectionRefused
        | K::NotFound
        | K::AddrNotAvailable
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::NetworkDown => NetKind::Connect,
        K::InvalidData => NetKind::Protocol,
        K::ConnectionReset
        | K::ConnectionAborted
        | K::BrokenPipe
        | K::UnexpectedEof
        | K::NotConnected => NetKind::Reset,
        _ => return None,
    })
}

/// A failure of the raw exchange from an io error, `what` saying what was being done.
pub fn io_failure(e: io::Error, what: &str) -> NetFailure {
    match io_kind(&e) {
        // A socket timeout reads "resource temporarily unavailable" on Linux: say what it is.
        NetKind::Timeout => NetFailure::new(
            NetKind::Timeout,
            format!("{what}: no answer within the time budget"),
        ),
        kind => NetFailure::new(kind, format!("{what}: {e}")),
    }
}

/// Each error of the chain that starts at `e`, including the ones an `io::Error` wraps
/// (its `source()` skips the wrapped error itself).
fn chain<'a>(e: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(e);
    while let Some(cur) = next {
        out.push(cur);
        next = match cur.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
            Some(inner) => Some(inner),
            None => cur.source(),
        };
        if out.len() > 32 {
            break;
        }
    }
    out
}

fn tls_in(e: &(dyn StdError + 'static)) -> bool {
    chain(e).iter().any(|c| c.is::<rustls::Error>())
}

/// The kind the errors of a chain stand for, from their types (a TLS error anywhere, then
/// the first io error, then hyper's predicates); None when none of them tells.
fn kind_in_chain(e: &(dyn StdError + 'static)) -> Option<NetKind> {
    let all = chain(e);
    if all.iter().any(|c| c.is::<rustls::Error>()) {
        return Some(NetKind::Tls);
    }
    if let Some(kind) = all
        .iter()
        .find_map(|c| c.downcast_ref::<io::Error>())
        .and_then(io_kind_told)
    {
        return Some(kind);
    }
    let h = all.iter().find_map(|c| c.downcast_ref::<hyper::Error>())?;
    if h.is_timeout() {
        Some(NetKind::Timeout)
    } else if h.is_parse() {
        Some(NetKind::Protocol)
    } else if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
        Some(NetKind::Reset)
    } else {
        None
    }
}

/// The kind of a reqwest failure, from types only.
pub fn reqwest_kind(e: &reqwest::Error) -> NetKind {
    if e.is_timeout() {
        return NetKind::Timeout;
    }
    if let Some(kind) = kind_in_chain(e) {
        return kind;
    }
    // A failed DNS lookup, say: an io error of no telling kind while connecting.
    if e.is_connect() {
        NetKind::Connect
    } else if e.is_decode() || e.is_body() || e.is_status() {
        NetKind::Protocol
    } else {
        NetKind::Reset
    }
}

/// A failure to open a connection for the keep-alive client ([`super::pool`]): TCP, proxy
/// tunnel or TLS handshake, with its kind and whole message.
pub fn from_connect(e: &(dyn StdError + 'static)) -> NetFailure {
    // A failed DNS lookup is an io error of no telling kind: a failure to connect.
    let kind = kind_in_chain(e).unwrap_or(NetKind::Connect);
    NetFailure::new(kind, crate::error::error_chain(e)).with_tunnel_fix()
}

/// A reqwest failure with its kind and a message in csm's words: what failed, then the
/// deepest cause, the one that says why (`could not connect: Connection refused (os error
/// 111)`); the layers between ("error sending request: client error (Connect): tcp connect
/// error: …") say nothing more. The URL is left out: the caller names it.
pub fn from_reqwest(e: reqwest::Error) -> NetFailure {
    let kind = reqwest_kind(&e);
    NetFailure::new(kind, in_plain_words(kind, &e.without_url())).with_tunnel_fix()
}

fn in_plain_words(kind: NetKind, e: &(dyn StdError + 'static)) -> String {
    let mut root: &(dyn StdError + 'static) = e;
    while let Some(next) = root.source() {
        root = next;
    }
    let what = kind.what_failed();
    let cause = root.to_string();
    // The library's words for the same thing add nothing ("connection closed before the
    // answer was whole: connection closed before message completed"); a cause that says
    // why (refused, reset by peer) is kept.
    let lead = |s: &str| -> Vec<String> {
        s.split_whitespace()
            .take(2)
            .map(str::to_lowercase)
            .collect()
    };
    if lead(what) == lead(&cause) {
        what.to_string()
    } else {
        format!("{what}: {cause}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_in_other_words_for_the_same_thing_is_not_said_twice() {
        let said = |kind, cause: &str| in_plain_words(kind, &io::Error::other(cause.to_string()));
        assert_eq!(
            said(NetKind::Reset, "connection closed before message completed"),
            "connection closed before the answer was whole"
        );
        assert_eq!(
            said(NetKind::Reset, "Connection reset by peer (os error 104)"),
            "connection closed before the answer was whole: Connection reset by peer (os error 104)"
        );
        assert_eq!(
            said(NetKind::Connect, "Connection refused (os error 111)"),
            "could not connect: Connection refused (os error 111)"
        );
    }

    #[test]
    fn io_kinds() {
        let k = |kind| io_kind(&io::Error::from(kind));
        assert_eq!(k(io::ErrorKind::TimedOut), NetKind::Timeout);
        assert_eq!(k(io::ErrorKind::WouldBlock), NetKind::Timeout);
        assert_eq!(k(io::ErrorKind::ConnectionRefused), NetKind::Connect);
        assert_eq!(k(io::ErrorKind::ConnectionReset), NetKind::Reset);
        assert_eq!(k(io::ErrorKind::UnexpectedEof), NetKind::Reset);
        // The message is never read: a "certificate" in it makes no TLS failure.
        let e = io::Error::other("certificate tls handshake");
        assert_eq!(io_kind(&e), NetKind::Reset);
    }

    /// While connecting, an io error of no telling kind (a failed DNS lookup) is a failure
    /// to connect; one that tells (a handshake cut short) keeps its kind.
    #[test]
    fn a_failed_lookup_while_connecting_is_connect_a_cut_handshake_is_reset() {
        let lookup = io::Error::other("failed to lookup address information");
        assert_eq!(kind_in_chain(&lookup), None);
        assert_eq!(from_connect(&lookup).kind, NetKind::Connect);
        let cut = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(from_connect(&cut).kind, NetKind::Reset);
    }

    #[test]
    fn a_failure_says_what_failed_and_its_deepest_cause() {
        #[derive(Debug)]
        struct Layer(&'static str, Option<io::Error>);
        impl std::fmt::Display for Layer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl StdError for Layer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                self.1.as_ref().map(|e| e as _)
            }
        }
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "Connection refused");
        let e = Layer("client error (Connect)", Some(refused));
        assert_eq!(
            in_plain_words(NetKind::Connect, &e),
            "could not connect: Connection refused"
        );
        let alone = Layer("operation timed out", None);
        assert_eq!(
            in_plain_words(NetKind::Timeout, &alone),
            "no answer in time: operation timed out"
        );
    }

    #[test]
    fn a_wrapped_rustls_error_is_tls() {
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(io_kind(&e), NetKind::Tls);
        // Found through the chain too, behind another layer.
        #[derive(Debug)]
        struct Outer(io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("request failed")
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        assert!(tls_in(&Outer(e)));
    }
}
