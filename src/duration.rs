//! The one reading of every duration flag: `5s`, `1500ms`, `1.5s`, `2m`, `1h`, or a bare
//! number in the unit the flag's help names, within the flag's own bounds.

use std::time::Duration;

/// The unit of a bare number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bare {
    Millis,
    Secs,
}

/// Parses `s` as a duration between `min` and `max` inclusive.
pub fn parse(s: &str, bare: Bare, min: Duration, max: Duration) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&t[..i], t[i..].trim()),
        None => (t, ""),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration such as 5s, 1500ms or 2m"))?;
    let secs = match unit {
        "" if bare == Bare::Millis => v / 1000.0,
        "" | "s" => v,
        "ms" => v / 1000.0,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("{s:?}: unit must be ms, s, m or h")),
    };
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| (min..=max).contains(d))
        .ok_or_else(|| format!("{s:?}: must be between {} and {}", show(min), show(max)))
}

/// A bound as people write it: `1ms`, `30s`, `10m`, `24h`.
pub fn show(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) && ms > 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A clap value parser: bare numbers in `bare`, bounded by `min` and `max`.
pub fn flag(
    bare: Bare,
    min: Duration,
    max: Duration,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |s| parse(s, bare, min, max)
}

/// Time budgets and timeouts: bare seconds, 1 ms to 10 minutes.
pub fn timeout(s: &str) -> Result<Duration, String> {
    parse(
        s,
        Bare::Secs,
        Duration::from_millis(1),
        Duration::from_secs(600),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_reads_the_same() {
        for s in ["5s", "5000ms", "5", "0.0833333333m", " 5 s"] {
            let d = timeout(s).unwrap();
            assert!((d.as_secs_f64() - 5.0).abs() < 0.01, "{s}: {d:?}");
        }
        assert_eq!(timeout("1.5s"), Ok(Duration::from_millis(1500)));
        let ms = flag(
            Bare::Millis,
            Duration::from_millis(1),
            Duration::from_secs(30),
        );
        assert_eq!(ms("500"), Ok(Duration::from_millis(500)));
        assert_eq!(ms("2s"), Ok(Duration::from_secs(2)));
        let day = flag(
            Bare::Secs,
            Duration::from_secs(1),
            Duration::from_secs(86_400),
        );
        assert_eq!(day("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn errors_name_the_value_and_the_rule() {
        assert_eq!(
            timeout("0s").unwrap_err(),
            "\"0s\": must be between 1ms and 10m"
        );
        assert!(timeout("1h").unwrap_err().contains("between 1ms and 10m"));
        assert!(timeout("5d")
            .unwrap_err()
            .contains("unit must be ms, s, m or h"));
        assert!(timeout("soon").unwrap_err().contains("expected a duration"));
        assert!(timeout("1e999").is_err());
    }
}
