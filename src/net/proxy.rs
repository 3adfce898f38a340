//! Which proxy a call goes through, from the usual environment variables.
//!
//! - Loopback destinations (127.0.0.0/8, ::1, `localhost`) never go through a proxy.
//! - `https://` URLs use `https_proxy` / `HTTPS_PROXY`, `http://` URLs `http_proxy` /
//!   `HTTP_PROXY`; either falls back to `all_proxy` / `ALL_PROXY`. Lower case wins; an
//!   empty value counts as unset.
//! - `no_proxy` / `NO_PROXY`: a comma-separated list of host names (which also cover their
//!   subdomains; a leading `.` or `*.` is allowed), IP addresses and CIDR ranges
//!   (`10.0.0.0/8`), or `*` for every host. Ports are not matched.
//! - A proxy is `http://[user:password@]host[:port]` (or `host:port`); HTTPS destinations
//!   are reached through `CONNECT`. Other proxy schemes are refused with an error that
//!   names the variable. Proxy credentials are never printed.

use reqwest::Url;
use std::net::IpAddr;

/// A proxy chosen for one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// The environment variable it came from, for messages.
    pub var: &'static str,
    pub url: Url,
}

impl Proxy {
    /// `host:port`, for messages (never the credentials).
    pub fn shown(&self) -> String {
        format!(
            "{}:{}",
            self.url.host_str().unwrap_or(""),
            self.url.port_or_known_default().unwrap_or(80)
        )
    }

    /// `proxy host:port from VAR`: how messages name it (never the credentials).
    pub fn named(&self) -> String {
        format!("proxy {} from {}", self.shown(), self.var)
    }

    /// The `Proxy-Authorization` value, when the proxy URL holds a user name.
    pub fn authorization(&self) -> Option<String> {
        use base64::Engine;
        if self.url.username().is_empty() {
            return None;
        }
        let pair = format!(
            "{}:{}",
            percent_decode(self.url.username()),
            percent_decode(self.url.password().unwrap_or(""))
        );
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        ))
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The process environment, as [`for_url`] reads it.
pub fn from_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// True for 127.0.0.0/8, ::1 and `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match host_ip(url) {
        Some(ip) => ip.is_loopback(),
        None => url
            .host_str()
            .is_some_and(|h| h.eq_ignore_ascii_case("localhost")),
    }
}

/// The host of `url` when it is an IP address.
pub fn host_ip(url: &Url) -> Option<IpAddr> {
    let h = url.host_str()?;
    h.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// The proxy for `url` under the rules above, reading variables through `env`.
pub fn for_url(url: &Url, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Proxy>, String> {
    if is_loopback(url) {
        return Ok(None);
    }
    let get = |lower, upper| var(env, lower, upper);
    let chosen = match url.scheme() {
        "https" => get("https_proxy", "HTTPS_PROXY"),
        _ => get("http_proxy", "HTTP_PROXY"),
    }
    .or_else(|| get("all_proxy", "ALL_PROXY"));
    let Some((var, value)) = chosen else {
        return Ok(None);
    };
    if let Some((_, list)) = get("no_proxy", "NO_PROXY") {
        if excluded(url, &list) {
            return Ok(None);
        }
    }
    parse(var, value.trim()).map(Some)
}

fn parse(var: &'static str, value: &str) -> Result<Proxy, String> {
    let with_scheme = if value.contains("://") {
        value.to_string()
    } else {
        format!("http://{value}")
    };
    // The value may hold a password: only its scheme or host is ever echoed.
    let url = Url::parse(&with_scheme)
        .map_err(|e| format!("{var}: not a proxy URL ({e}); write it as http://host:port"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "{var}: proxy scheme {:?} is not supported; use an http:// proxy",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "{var}: the proxy URL has no host; write it as http://host:port"
        ));
    }
    Ok(Proxy { var, url })
}

/// Entries of a `no_proxy` list that match no host as written: a CIDR range that is none
/// (`10.0.0.0/33`), a Windows setting (`<local>`), a port (not matched). The request would
/// go through the proxy without a word; said once a run.
fn unusable(list: &str) -> Vec<&str> {
    list.split(',')
        .map(str::trim)
        .filter(|e| {
            if let Some((net, bits)) = e.split_once('/') {
                let width = match net.parse::<IpAddr>() {
                    Ok(IpAddr::V4(_)) => 32,
                    Ok(IpAddr::V6(_)) => 128,
                    Err(_) => return true,
                };
                return bits.parse::<u32>().map_or(true, |b| b > width);
            }
            let bare = e.trim_start_matches('[');
            e.starts_with('<')
                || (e.contains(':') && bare.parse::<IpAddr>().is_err() && !e.starts_with('['))
                || (e.starts_with('[') && !e.ends_with(']'))
        })
        .collect()
}

/// The first of `lower`, `upper` set to something (lower case wins; empty is unset).
fn var(
    env: &dyn Fn(&str) -> Option<String>,
    lower: &'static str,
    upper: &'static str,
) -> Option<(&'static str, String)> {
    [lower, upper]
        .into_iter()
        .find_map(|n| env(n).filter(|v| !v.trim().is_empty()).map(|v| (n, v)))
}

/// What is wrong with the `no_proxy` list when a proxy is set at all: its entries that
/// match no host (the request would go through the proxy without a word). None when fine.
pub fn no_proxy_problem(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let any_proxy = [
        ("https_proxy", "HTTPS_PROXY"),
        ("http_proxy", "HTTP_PROXY"),
        ("all_proxy", "ALL_PROXY"),
    ]
    .iter()
    .any(|(l, u)| var(env, l, u).is_some());
    let (name, list) = var(env, "no_proxy", "NO_PROXY").filter(|_| any_proxy)?;
    let bad = unusable(&list);
    (!bad.is_empty()).then(|| {
        format!(
            "{name}: {} match no host (write host names, IP addresses or CIDR ranges such as 10.0.0.0/8; ports are not matched)",
            bad.iter().map(|e| format!("{e:?}")).collect::<Vec<_>>().join(", ")
        )
    })
}

/// `url`'s host is on the `no_proxy` list.
fn excluded(url: &Url, list: &str) -> bool {
    let host = url
        .host_str()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let ip = host_ip(url);
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            if let Some((net, bits)) = entry.split_once('/') {
                return match (ip, net.parse::<IpAddr>(), bits.parse::<u32>()) {
                    (Some(ip), Ok(net), Ok(bits)) => in_cidr(ip, net, bits),
                    _ => false,
                };
            }
            let entry = entry.trim_start_matches("*.").trim_start_matches('.');
            let entry = entry.trim_start_matches('[').trim_end_matches(']');
            if let (Some(ip), Ok(e)) = (ip, entry.parse::<IpAddr>()) {
                return ip == e;
            }
            let entry = entry.to_ascii_lowercase();
            host == entry || host.ends_with(&format!(".{entry}"))
        })
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    let (a, b, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128, 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    if bits > width {
        return false;
    }
    let shift = width - bits;
    shift >= width || (a >> shift) == (b >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(url: &str, vars: &[(&str, &str)]) -> Result<Option<String>, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |n: &str| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        for_url(&Url::parse(url).unwrap(), &env)
            .map(|p| p.map(|p| format!("{} {}", p.var, p.shown())))
    }

    #[test]
    fn loopback_is_never_proxied() {
        let all = [
            ("HTTPS_PROXY", "http://proxy.example:3128"),
            ("HTTP_PROXY", "bogus://"),
            ("ALL_PROXY", "http://proxy.example:1"),
        ];
        for u in [
            "https://127.0.0.1:8443/",
            "http://localhost/",
            "http://[::1]:9/",
            "http://127.8.0.1/",
        ] {
            assert_eq!(pick(u, &all), Ok(None), "{u}");
        }
    }

    #[test]
    fn variables_by_scheme_lower_case_first() {
        let vars = [
            ("HTTPS_PROXY", "http://upper:3128"),
            ("https_proxy", "lower:8080"),
            ("HTTP_PROXY", "http://plain:3128"),
        ];
        assert_eq!(
            pick("https://isv.example.com/", &vars),
            Ok(Some("https_proxy lower:8080".into()))
        );
        assert_eq!(
            pick("http://isv.example.com/", &vars),
            Ok(Some("HTTP_PROXY plain:3128".into()))
        );
        assert_eq!(
            pick(
                "https://isv.example.com/",
                &[("ALL_PROXY", "http://all:1"), ("https_proxy", " ")]
            ),
            Ok(Some("ALL_PROXY all:1".into()))
        );
        assert_eq!(pick("https://isv.example.com/", &[]), Ok(None));
    }

    #[test]
    fn no_proxy_entries() {
        let skipped = |url: &str, list: &str| {
            pick(url, &[("HTTPS_PROXY", "http://p:3128"), ("NO_PROXY", list)]) == Ok(None)
        };
        assert!(skipped("https://isv.example.com/", "*"));
        assert!(skipped(
            "https://isv.example.com/",
            "other.org, example.com"
        ));
        assert!(skipped("https://isv.example.com/", ".example.com"));
        assert!(skipped("https://ISV.example.com/", "*.EXAMPLE.com"));
        assert!(!skipped("https://notexample.com/", "example.com"));
        assert!(skipped("https://10.1.2.3/", "10.0.0.0/8"));
        assert!(!skipped("https://11.1.2.3/", "10.0.0.0/8"));
        assert!(skipped("https://192.0.2.7:8443/", "192.0.2.7"));
        assert!(skipped("https://[2001:db8::1]/", "2001:db8::/32"));
        assert!(skipped("https://[2001:db8::1]/", "[2001:db8::1]"));
        assert!(!skipped("https://isv.example.com/", ""));
    }

    #[test]
    fn no_proxy_entries_that_match_nothing_are_found() {
        assert_eq!(
            unusable("10.0.0.0/33, <local>, 192.0.2.10:80, host.example:8080, 10.0.0.0/8"),
            [
                "10.0.0.0/33",
                "<local>",
                "192.0.2.10:80",
                "host.example:8080"
            ]
        );
        assert!(
            unusable("*, .example.com, 2001:db8::1, [2001:db8::1], 2001:db8::/32, a.b").is_empty()
        );
        assert_eq!(unusable("x/8, 2001:db8::/129"), ["x/8", "2001:db8::/129"]);
        // Said only when a proxy is set at all.
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |n: &str| {
                vars.iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.to_string())
            }
        };
        let problem = no_proxy_problem(&env(&[
            ("NO_PROXY", "<local>"),
            ("https_proxy", "http://p:1"),
        ]));
        assert!(problem
            .unwrap()
            .starts_with("NO_PROXY: \"<local>\" match no host"));
        assert_eq!(no_proxy_problem(&env(&[("NO_PROXY", "<local>")])), None);
        assert_eq!(
            no_proxy_problem(&env(&[("NO_PROXY", "a.b"), ("ALL_PROXY", "p:1")])),
            None
        );
    }

    #[test]
    fn bad_proxies_name_the_variable_and_hide_credentials() {
        let e = pick(
            "https://isv.example.com/",
            &[("HTTPS_PROXY", "socks5://u:hunter2@p:1080")],
        )
        .unwrap_err();
        assert!(e.starts_with("HTTPS_PROXY:") && e.contains("socks5"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = pick(
            "https://isv.example.com/",
            &[("HTTPS_PROXY", "http://u:hunter2@[bad")],
        )
        .unwrap_err();
        assert!(
            e.starts_with("HTTPS_PROXY:") && !e.contains("hunter2"),
            "{e}"
        );
    }

    #[test]
    fn credentials_become_basic_authorization() {
        let p = parse("HTTP_PROXY", "http://us%40er:p%3Ass@proxy:3128").unwrap();
        assert_eq!(p.shown(), "proxy:3128");
        // base64("us@er:p:ss")
        assert_eq!(p.authorization().as_deref(), Some("Basic dXNAZXI6cDpzcw=="));
        assert_eq!(
            parse("HTTP_PROXY", "proxy:3128").unwrap().authorization(),
            None
        );
    }
}
