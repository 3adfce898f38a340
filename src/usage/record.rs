//! One usage record (话单) and the local rules it must pass before it is journaled.
//! Pure: the clock comes in as an argument.

use crate::protocol::hmac::sha256_hex;
use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Timelike, Utc};

/// The API's time form: UTC `yyyyMMdd'T'HHmmss'Z'`.
pub const API_TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";
/// Field length limits of the usage push API (§4.3).
pub const MAX_ID_LEN: usize = 64;
/// `begin_time` must lie within this many days of now (MKT.9004).
pub const MAX_AGE_DAYS: i64 = 21;
/// Double(12,4): at most 8 digits before the point, 4 after.
pub const MAX_INT_DIGITS: usize = 8;
pub const MAX_DECIMALS: usize = 4;

/// The input columns, as the spec names them.
pub const FIELDS: [&str; 7] = [
    "instance_id",
    "begin_time",
    "end_time",
    "usage_value",
    "metering_sn",
    "relate_pkg_instance",
    "record_time",
];
/// Columns `csm usage export` adds for the reader's information; ignored on input, so that
/// an exported file can be fixed and uploaded again as it is. `maybe_delivered` (yes or no):
/// an attempt may have reached the marketplace, so the record is looked up in 话单管理 before
/// it is fixed (`csm usage resolve`).
pub const INFO_FIELDS: [&str; 4] = ["state", "result_code", "result_msg", "maybe_delivered"];
/// Columns `csm usage export --state abandoned` adds after those: who gave up on the record,
/// when and why. Ignored on input too.
pub const ABANDON_FIELDS: [&str; 3] = ["abandoned_at", "abandoned_by", "abandon_reason"];

/// A column an export writes for the reader and the input ignores.
pub fn is_info_field(name: &str) -> bool {
    INFO_FIELDS.contains(&name) || ABANDON_FIELDS.contains(&name)
}
/// Columns an input must carry; the others may be absent or empty.
pub const REQUIRED: [&str; 4] = ["instance_id", "begin_time", "end_time", "usage_value"];

/// A record that passed the field rules. Times are in the API form, the value normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub instance_id: String,
    pub begin_time: String,
    pub end_time: String,
    /// Decimal text without sign, exponent, leading or trailing zeros (`"12.5"`, `"3"`).
    pub usage_value: String,
    pub metering_sn: String,
    /// True when metering_sn was derived from the record identity (absent in the input).
    pub sn_derived: bool,
    pub relate_pkg_instance: Option<String>,
    pub record_time: String,
}

/// The raw text of one input row, by field name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawRecord {
    pub instance_id: Option<String>,
    pub begin_time: Option<String>,
    pub end_time: Option<String>,
    pub usage_value: Option<String>,
    pub metering_sn: Option<String>,
    pub relate_pkg_instance: Option<String>,
    pub record_time: Option<String>,
}

impl RawRecord {
    pub fn set(&mut self, field: &str, value: String) -> bool {
        let slot = match field {
            "instance_id" => &mut self.instance_id,
            "begin_time" => &mut self.begin_time,
            "end_time" => &mut self.end_time,
            "usage_value" => &mut self.usage_value,
            "metering_sn" => &mut self.metering_sn,
            "relate_pkg_instance" => &mut self.relate_pkg_instance,
            "record_time" => &mut self.record_time,
            _ => return false,
        };
        *slot = Some(value);
        true
    }
}

/// An input value as messages quote it: at most 40 characters, so that a huge field
/// does not turn into a huge error.
pub fn show(text: &str) -> String {
    if text.chars().count() <= 40 {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(32).collect();
        format!("{head:?}... ({} characters)", text.chars().count())
    }
}

/// Quotes an input value with [`show`] only when a message is actually written.
struct ShowLazy<'a>(&'a str);

impl std::fmt::Display for ShowLazy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&show(self.0))
    }
}

/// A field of a record that breaks a rule: the field, and the one line that names it, its
/// value and the rule (the `field` lets a report group its errors by field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Where a field's error is one line among others (an agent event, a marketplace check).
impl From<FieldError> for String {
    fn from(e: FieldError) -> String {
        e.message
    }
}

fn bad(field: &'static str, message: String) -> FieldError {
    FieldError { field, message }
}

fn missing(field: &'static str) -> FieldError {
    bad(field, format!("{field}: missing (required)"))
}

/// Parses a time in the API form or RFC 3339 (any offset, converted to UTC).
pub fn parse_time(field: &'static str, text: &str) -> Result<DateTime<Utc>, FieldError> {
    let t = text.trim();
    if let Some(d) = parse_api_time(t) {
        return Ok(d);
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        if d.nanosecond() != 0 {
            return Err(bad(
                field,
                format!(
                    "{field} {}: has fractions of a second (the API takes whole seconds)",
                    show(text)
                ),
            ));
        }
        return Ok(d.with_timezone(&Utc));
    }
    Err(bad(
        field,
        format!(
        "{field} {}: not a time (expected UTC yyyyMMddTHHmmssZ like 20220809T091000Z, or RFC 3339)",
        show(text)
    ),
    ))
}

/// The API form only (`yyyyMMdd'T'HHmmss'Z'`), parsed by hand: it is on the path of every
/// record of every upload.
pub fn parse_api_time(t: &str) -> Option<DateTime<Utc>> {
    let b = t.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(4..6)?, num(6..8)?)?;
    let time = chrono::NaiveTime::from_hms_opt(num(9..11)?, num(11..13)?, num(13..15)?)?;
    Some(Utc.from_utc_datetime(&NaiveDateTime::new(date, time)))
}

pub fn format_api_time(t: DateTime<Utc>) -> String {
    use chrono::Datelike;
    // By hand: three of these per record on every import.
    let mut b = [0u8; 16];
    let year = t.year().clamp(0, 9999) as u32;
    let put = |b: &mut [u8], v: u32, at: usize, width: usize| {
        let mut v = v;
        for i in (0..width).rev() {
            b[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(&mut b, year, 0, 4);
    put(&mut b, t.month(), 4, 2);
    put(&mut b, t.day(), 6, 2);
    b[8] = b'T';
    put(&mut b, t.hour(), 9, 2);
    put(&mut b, t.minute(), 11, 2);
    put(&mut b, t.second(), 13, 2);
    b[15] = b'Z';
    String::from_utf8_lossy(&b).into_owned()
}

/// Checks and normalises usage_value: a plain decimal > 0, at most 4 decimals, Double(12,4).
pub fn normalize_value(text: &str) -> Result<String, FieldError> {
    decimal("usage_value", text, false)
}

/// The decimal rule of `usage_value` for any field: at most 4 decimals and 8 digits before
/// the point, above 0 unless `zero_ok` (an agent event may be 0). Normalized text, or an
/// error naming `field`, the value and the rule.
pub fn decimal(field: &'static str, text: &str, zero_ok: bool) -> Result<String, FieldError> {
    let v = text.trim();
    let text = ShowLazy(text);
    let rule = format!(
        "must be a decimal number {} 0 with at most 4 decimals and at most 8 digits before the point",
        if zero_ok { ">=" } else { ">" }
    );
    if v.is_empty() {
        return Err(bad(field, format!("{field} {text}: empty ({rule})")));
    }
    if v.starts_with('-') {
        return Err(bad(field, format!("{field} {text}: negative ({rule})")));
    }
    let (int, frac) = match v.split_once('.') {
        Some((i, f)) => (i, f),
        None => (v, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || (v.contains('.') && frac.is_empty()) {
        return Err(bad(
            field,
            format!("{field} {text}: not a plain decimal ({rule})"),
        ));
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > MAX_DECIMALS {
        return Err(bad(
            field,
            format!("{field} {text}: {} decimals ({rule})", frac.len()),
        ));
    }
    let int = int.trim_start_matches('0');
    if int.len() > MAX_INT_DIGITS {
        return Err(bad(field, format!("{field} {text}: too large ({rule})")));
    }
    if int.is_empty() && frac.is_empty() && !zero_ok {
        return Err(bad(field, format!("{field} {text}: zero ({rule})")));
    }
    let int = if int.is_empty() { "0" } else { int };
    Ok(if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    })
}

/// The metering_sn csm uses when the input has none: `csm-<begin_time>-<32 hex digits of
/// SHA-256 of the identity>` (instance, window, package), so that the same record is never
/// sent under two ids.
pub fn derive_metering_sn(
    instance_id: &str,
    begin_time: &str,
    end_time: &str,
    relate_pkg_instance: Option<&str>,
) -> String {
    let identity = format!(
        "{instance_id}\n{begin_time}\n{end_time}\n{}",
        relate_pkg_instance.unwrap_or("")
    );
    // The window start first: records arrive roughly in time order, so ids that sort by time
    // keep the unique indexes (journal and marketplace) appending instead of scattering.
    format!(
        "csm-{begin_time}-{}",
        &sha256_hex(identity.as_bytes())[..32]
    )
}

pub fn check_id(field: &'static str, v: &str) -> Result<(), FieldError> {
    if v.is_empty() {
        return Err(bad(field, format!("{field}: empty (required)")));
    }
    if v.chars().count() > MAX_ID_LEN {
        return Err(bad(
            field,
            format!(
                "{field} {:?}...: {} characters (at most {MAX_ID_LEN})",
                v.chars().take(16).collect::<String>(),
                v.chars().count()
            ),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(bad(
            field,
            format!("{field} {}: contains control characters", show(v)),
        ));
    }
    Ok(())
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// An id as given, or None when it is absent or blank. Times and values are normalised
/// anyway (surrounding spaces change nothing sent), but an id is the seller's own: one
/// trimmed without notice would be sent, billed and looked up in 话单管理 under another id.
pub fn exact_id<'a>(
    field: &'static str,
    v: &'a Option<String>,
) -> Result<Option<&'a str>, FieldError> {
    let Some(text) = v.as_deref().filter(|t| !t.trim().is_empty()) else {
        return Ok(None);
    };
    if text.trim() != text {
        return Err(bad(
            field,
            format!(
                "{field} {}: starts or ends with white space (csm never changes an id: remove it)",
                show(text)
            ),
        ));
    }
    check_id(field, text)?;
    Ok(Some(text))
}

/// A record that began at `begin_time` (API form) is past the marketplace's 21-day limit
/// at `now`: it refuses the record (MKT.9004), and any other for its period.
pub fn past_age_limit(begin_time: &str, now: DateTime<Utc>) -> bool {
    parse_time("begin_time", begin_time).is_ok_and(|b| too_old(b, now))
}

/// The marketplace's 21-day limit on a record's begin_time (an agent's hour start).
pub fn too_old(begin: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now - begin > Duration::days(MAX_AGE_DAYS)
}

/// Applies every field rule. `now` is the reference for "not in the future" and the 21-day
/// limit; a missing record_time becomes `now`.
pub fn validate(raw: &RawRecord, now: DateTime<Utc>) -> Result<UsageRecord, FieldError> {
    let instance_id =
        exact_id("instance_id", &raw.instance_id)?.ok_or_else(|| missing("instance_id"))?;
    let begin = parse_time(
        "begin_time",
        non_empty(&raw.begin_time).ok_or_else(|| missing("begin_time"))?,
    )?;
    let end = parse_time(
        "end_time",
        non_empty(&raw.end_time).ok_or_else(|| missing("end_time"))?,
    )?;
    let value = normalize_value(raw.usage_value.as_deref().unwrap_or(""))?;
    let begin_s = format_api_time(begin);
    let end_s = format_api_time(end);
    if begin > end {
        return Err(bad(
            "begin_time",
            format!(
                "begin_time {begin_s} is after end_time {end_s} (rule: begin_time <= end_time)"
            ),
        ));
    }
    if end > now {
        return Err(bad(
            "end_time",
            format!(
                "end_time {end_s} is in the future (rule: end_time <= now, now is {})",
                format_api_time(now)
            ),
        ));
    }
    if too_old(begin, now) {
        return Err(bad("begin_time", format!(
            "begin_time {begin_s} is more than {MAX_AGE_DAYS} days old (the marketplace refuses it with MKT.9004)"
        )));
    }
    let relate = exact_id("relate_pkg_instance", &raw.relate_pkg_instance)?.map(str::to_string);
    let record_time = match non_empty(&raw.record_time) {
        Some(t) => {
            // The record is produced once its window has ended, and not in the future.
            let rt = parse_time("record_time", t)?;
            let rt_s = format_api_time(rt);
            if rt < end {
                return Err(bad("record_time", format!(
                    "record_time {rt_s} is before end_time {end_s} (rule: end_time <= record_time <= now)"
                )));
            }
            if rt > now {
                return Err(bad("record_time", format!(
                    "record_time {rt_s} is in the future (rule: end_time <= record_time <= now, now is {})",
                    format_api_time(now)
                )));
            }
            rt_s
        }
        None => format_api_time(now),
    };
    let (metering_sn, sn_derived) = match exact_id("metering_sn", &raw.metering_sn)? {
        Some(sn) => (sn.to_string(), false),
        None => (
            derive_metering_sn(instance_id, &begin_s, &end_s, relate.as_deref()),
            true,
        ),
    };
    Ok(UsageRecord {
        instance_id: instance_id.to_string(),
        begin_time: begin_s,
        end_time: end_s,
        usage_value: value,
        metering_sn,
        sn_derived,
        relate_pkg_instance: relate,
        record_time,
    })
}

/// How a record stands against the reporting windows of §4.5 (computed in UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Deadline {
    /// Still inside the ideal window (hourly: minutes 0-15 of the next hour; daily: 00:00-00:15).
    OnTime,
    /// Past the ideal window, before the last moment (hourly: 2 h; daily: 01:00).
    Late,
    /// Past the last moment: the charge slips or the period is already billed.
    Overdue,
}

impl Deadline {
    pub fn as_str(self) -> &'static str {
        match self {
            Deadline::OnTime => "on-time",
            Deadline::Late => "late",
            Deadline::Overdue => "overdue",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Billing {
    Hourly,
    Daily,
}

fn ceil_to(t: DateTime<Utc>, step: Duration) -> DateTime<Utc> {
    let secs = step.num_seconds();
    let ts = t.timestamp();
    let up = ts.div_euclid(secs) * secs + if ts.rem_euclid(secs) == 0 { 0 } else { secs };
    Utc.timestamp_opt(up, 0).single().unwrap_or(t)
}

/// The ideal and the last moment to report usage that ends at `end`.
pub fn deadlines(end: DateTime<Utc>, billing: Billing) -> (DateTime<Utc>, DateTime<Utc>) {
    match billing {
        Billing::Hourly => {
            let h = ceil_to(end, Duration::hours(1));
            (h + Duration::minutes(15), h + Duration::hours(2))
        }
        Billing::Daily => {
            let d = ceil_to(end, Duration::days(1));
            (d + Duration::minutes(15), d + Duration::hours(1))
        }
    }
}

pub fn deadline_status(end_time: &str, billing: Billing, now: DateTime<Utc>) -> Deadline {
    let Ok(end) = parse_time("end_time", end_time) else {
        return Deadline::Overdue;
    };
    let (ideal, last) = deadlines(end, billing);
    if now <= ideal {
        Deadline::OnTime
    } else if now <= last {
        Deadline::Late
    } else {
        Deadline::Overdue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        parse_time("now", "20260110T120000Z").unwrap()
    }

    fn raw(begin: &str, end: &str, value: &str) -> RawRecord {
        RawRecord {
            instance_id: Some("inst-1".into()),
            begin_time: Some(begin.into()),
            end_time: Some(end.into()),
            usage_value: Some(value.into()),
            ..Default::default()
        }
    }

    #[test]
    fn api_and_rfc3339_times() {
        assert_eq!(
            format_api_time(parse_time("t", "20220809T091000Z").unwrap()),
            "20220809T091000Z"
        );
        assert_eq!(
            format_api_time(parse_time("t", "2022-08-09T17:10:00+08:00").unwrap()),
            "20220809T091000Z"
        );
        assert!(parse_time("t", "2022-08-09T09:10:00.5Z")
            .unwrap_err()
            .message
            .contains("fractions"));
        assert!(parse_time("t", "20220809T251000Z").is_err());
        assert!(parse_time("t", "20220809 091000").is_err());
        assert!(parse_time("t", "20220230T091000Z").is_err());
        assert_eq!(
            format_api_time(parse_api_time("20240229T235959Z").unwrap()),
            "20240229T235959Z"
        );
        assert!(parse_time("t", "yesterday")
            .unwrap_err()
            .message
            .contains("not a time"));
    }

    #[test]
    fn values() {
        assert_eq!(normalize_value("99").unwrap(), "99");
        assert_eq!(normalize_value("007.5000").unwrap(), "7.5");
        assert_eq!(normalize_value("0.0001").unwrap(), "0.0001");
        assert_eq!(normalize_value("99999999.9999").unwrap(), "99999999.9999");
        for bad in [
            "",
            "0",
            "0.0000",
            "-1",
            "1.23456",
            "1e3",
            "+1",
            "1.",
            ".5",
            "abc",
            "NaN",
            "100000000",
            "1 2",
        ] {
            assert!(normalize_value(bad).is_err(), "{bad} accepted");
        }
        assert!(normalize_value("-3")
            .unwrap_err()
            .message
            .contains("negative"));
        assert!(normalize_value("0").unwrap_err().message.contains("zero"));
        assert!(normalize_value("1.23456")
            .unwrap_err()
            .message
            .contains("5 decimals"));
        assert!(normalize_value("123456789012345678901234567890")
            .unwrap_err()
            .message
            .contains("too large"));
    }

    #[test]
    fn rules() {
        let r = validate(&raw("20260110T100000Z", "20260110T110000Z", "1.50"), now()).unwrap();
        assert_eq!(r.usage_value, "1.5");
        assert!(r.sn_derived);
        assert_eq!(r.record_time, "20260110T120000Z");
        assert!(
            validate(&raw("20260110T110000Z", "20260110T100000Z", "1"), now())
                .unwrap_err()
                .message
                .contains("after end_time")
        );
        assert!(
            validate(&raw("20260110T110000Z", "20260110T130000Z", "1"), now())
                .unwrap_err()
                .message
                .contains("future")
        );
        assert!(
            validate(&raw("20251201T110000Z", "20251201T130000Z", "1"), now())
                .unwrap_err()
                .message
                .contains("21 days")
        );
        let mut long = raw("20260110T100000Z", "20260110T110000Z", "1");
        long.instance_id = Some("x".repeat(65));
        assert!(validate(&long, now())
            .unwrap_err()
            .message
            .contains("at most 64"));
        let mut none = raw("20260110T100000Z", "20260110T110000Z", "1");
        none.instance_id = None;
        assert!(validate(&none, now())
            .unwrap_err()
            .message
            .contains("instance_id"));
    }

    /// An id with white space at either end is refused, naming the field and the value;
    /// around a time or a value spaces are dropped (nothing sent changes); a blank optional
    /// id is absent.
    #[test]
    fn ids_are_never_trimmed() {
        for (field, bad) in [
            ("instance_id", " inst-1"),
            ("instance_id", "inst-1 "),
            ("metering_sn", " x "),
            ("metering_sn", "x\t"),
            ("relate_pkg_instance", "\u{3000}pkg"),
        ] {
            let mut r = raw("20260110T100000Z", "20260110T110000Z", "1");
            r.set(field, bad.to_string());
            let e = validate(&r, now()).unwrap_err();
            assert_eq!(e.field, field);
            assert_eq!(
                e.message,
                format!(
                    "{field} {bad:?}: starts or ends with white space (csm never changes an id: remove it)"
                )
            );
        }
        let mut r = raw(" 20260110T100000Z", "20260110T110000Z ", " 1.50 ");
        r.metering_sn = Some("   ".into());
        let ok = validate(&r, now()).unwrap();
        assert_eq!(
            (
                ok.begin_time.as_str(),
                ok.usage_value.as_str(),
                ok.sn_derived
            ),
            ("20260110T100000Z", "1.5", true)
        );
        r.instance_id = Some("  ".into());
        assert_eq!(validate(&r, now()).unwrap_err().field, "instance_id");
    }

    #[test]
    fn past_the_age_limit() {
        assert!(!past_age_limit("20251220T120000Z", now()));
        assert!(past_age_limit("20251220T115959Z", now()));
    }

    #[test]
    fn derived_sn_is_stable_and_identity_based() {
        let a = validate(&raw("20260110T100000Z", "20260110T110000Z", "1"), now()).unwrap();
        let b = validate(
            &raw("2026-01-10T18:00:00+08:00", "20260110T110000Z", "2"),
            now(),
        )
        .unwrap();
        assert_eq!(a.metering_sn, b.metering_sn);
        assert!(a.metering_sn.len() <= MAX_ID_LEN);
        assert!(
            a.metering_sn.starts_with("csm-20260110T100000Z-"),
            "{}",
            a.metering_sn
        );
        let c = validate(&raw("20260110T090000Z", "20260110T110000Z", "1"), now()).unwrap();
        assert_ne!(a.metering_sn, c.metering_sn);
        let mut given = raw("20260110T100000Z", "20260110T110000Z", "1");
        given.metering_sn = Some("sn-1".into());
        let g = validate(&given, now()).unwrap();
        assert_eq!(g.metering_sn, "sn-1");
        assert!(!g.sn_derived);
    }

    #[test]
    fn deadline_windows() {
        let n = |s| parse_time("now", s).unwrap();
        let end = "20260110T130000Z";
        assert_eq!(
            deadline_status(end, Billing::Hourly, n("20260110T131000Z")),
            Deadline::OnTime
        );
        assert_eq!(
            deadline_status(end, Billing::Hourly, n("20260110T140000Z")),
            Deadline::Late
        );
        assert_eq!(
            deadline_status(end, Billing::Hourly, n("20260110T150001Z")),
            Deadline::Overdue
        );
        // Usage up to 13:25 is due 14:00-14:15.
        assert_eq!(
            deadline_status("20260110T132500Z", Billing::Hourly, n("20260110T141500Z")),
            Deadline::OnTime
        );
        assert_eq!(
            deadline_status("20260110T000000Z", Billing::Daily, n("20260110T001500Z")),
            Deadline::OnTime
        );
        assert_eq!(
            deadline_status("20260109T180000Z", Billing::Daily, n("20260110T003000Z")),
            Deadline::Late
        );
        assert_eq!(
            deadline_status("20260109T180000Z", Billing::Daily, n("20260110T010001Z")),
            Deadline::Overdue
        );
    }
}
