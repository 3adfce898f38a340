//! Raw usage events as the seller's services write them (spool files, `POST /events`): the
//! field rules, the derived `event_id`, and values as whole ten-thousandths so that sums are
//! exact. Pure: no I/O.

use crate::protocol::hmac::sha256_hex;
use crate::protocol::json::{self, Json};
use crate::usage::reader::{csv_header, row_values};
use crate::usage::record::{self, show, MAX_AGE_DAYS};
use chrono::{DateTime, Timelike, Utc};

/// The fields an event may carry; the first three are required.
pub const FIELDS: [&str; 5] = [
    "instance_id",
    "time",
    "value",
    "event_id",
    "relate_pkg_instance",
];
pub const REQUIRED: [&str; 3] = ["instance_id", "time", "value"];

/// Values are kept as ten-thousandths (the API's 4 decimals): sums are exact integers.
pub const UNITS: i64 = 10_000;

/// The largest usage_value a record carries (8 digits before the point, 4 after), in
/// ten-thousandths: an hour's sum above it could never be billed.
pub const MAX_UNITS: i64 = 10_i64.pow(record::MAX_INT_DIGITS as u32) * UNITS - 1;

/// An event that passed the field rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event_id: String,
    pub instance_id: String,
    /// API form (`yyyyMMddTHHmmssZ`), UTC.
    pub time: String,
    /// The start of the clock hour `time` falls in, API form.
    pub hour: String,
    /// Ten-thousandths.
    pub units: i64,
    pub relate_pkg_instance: Option<String>,
}

/// The fields of one line before the rules are applied.
#[derive(Debug, Clone, Default)]
pub struct RawEvent {
    pub instance_id: Option<String>,
    pub time: Option<String>,
    pub value: Option<String>,
    pub event_id: Option<String>,
    pub relate_pkg_instance: Option<String>,
}

impl RawEvent {
    fn set(&mut self, field: &str, v: String) {
        let slot = match field {
            "instance_id" => &mut self.instance_id,
            "time" => &mut self.time,
            "value" => &mut self.value,
            "event_id" => &mut self.event_id,
            _ => &mut self.relate_pkg_instance,
        };
        *slot = Some(v);
    }
}

/// One JSON object per line, the same way `usage upload` reads JSONL: a repeated key is an
/// error, `value` may be a string or a number, other values must be strings.
pub fn parse_json_line(line: &str) -> Result<RawEvent, String> {
    let v = json::parse_unique(line.as_bytes()).map_err(|e| match e {
        json::UniqueError::RepeatedKey(k) => format!("field {} appears twice", show(&k)),
        json::UniqueError::Invalid(e) => {
            e.to_string()
                .replacen("body: not JSON", "not valid JSON", 1)
        }
    })?;
    let Json::Object(members) = v else {
        return Err("not a JSON object (one event object per line)".into());
    };
    let mut raw = RawEvent::default();
    for (k, v) in members {
        if !FIELDS.contains(&k.as_str()) {
            return Err(format!(
                "field {} is not an event field (expected some of {})",
                show(&k),
                FIELDS.join(", ")
            ));
        }
        let text = match v {
            Json::Null => continue,
            Json::String(s) => s,
            Json::Number(n) if k == "value" => n,
            _ => {
                return Err(format!(
                    "field {}: must be a string{}",
                    show(&k),
                    if k == "value" { " or a number" } else { "" }
                ))
            }
        };
        raw.set(&k, text);
    }
    Ok(raw)
}

/// A CSV header: the column names, each an event field, none twice, the required ones there.
pub fn parse_csv_header(line: &str) -> Result<Vec<String>, String> {
    csv_header(line, "an event field", &FIELDS, &REQUIRED, |_| false)
}

pub fn parse_csv_row(cols: &[String], line: &str) -> Result<RawEvent, String> {
    let values = row_values(cols, line)?;
    let mut raw = RawEvent::default();
    for (c, v) in cols.iter().zip(values) {
        if !v.trim().is_empty() {
            raw.set(c, v);
        }
    }
    Ok(raw)
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// `value`: a plain decimal >= 0 (a usage record's rule, but zero allowed: an event may say
/// "nothing used"), at most 4 decimals and 8 digits before the point.
pub fn parse_units(text: &str) -> Result<i64, String> {
    // The record's own rule and wording, under the event's field name, 0 allowed.
    let normal = record::decimal("value", text, true)?;
    let (int, frac) = normal.split_once('.').unwrap_or((&normal, ""));
    // At most 8 digits and 4 decimals by the rule: both parse.
    let int: i64 = int.parse().unwrap_or_default();
    let frac: i64 = format!("{frac:0<4}").parse().unwrap_or_default();
    Ok(int * UNITS + frac)
}

/// Ten-thousandths back to the API's decimal text (`12.5`, `3`).
pub fn format_units(units: i64) -> String {
    let (int, frac) = (units / UNITS, units % UNITS);
    if frac == 0 {
        return int.to_string();
    }
    let f = format!("{frac:04}");
    format!("{int}.{}", f.trim_end_matches('0'))
}

/// The event_id csm uses when an event has none: `evt-` + the first 32 hex digits of SHA-256
/// of `instance_id \n time \n value \n relate_pkg_instance` (time in the API form, with the
/// fraction of a second it was given, value normalised). The same event sent twice is counted
/// once; two real events that say exactly the same thing at the same moment need ids of
/// their own.
pub fn derive_event_id(instance_id: &str, time: &str, units: i64, relate: Option<&str>) -> String {
    let identity = format!(
        "{instance_id}\n{time}\n{}\n{}",
        format_units(units),
        relate.unwrap_or("")
    );
    format!("evt-{}", &sha256_hex(identity.as_bytes())[..32])
}

/// An event's time: the API form or RFC 3339 with any offset, as usage records take them,
/// and also with a fraction of a second (JavaScript's `toISOString()` writes milliseconds).
/// The fraction is cut off, never rounded (an event at 10:59:59.999 stays in the 10 o'clock
/// hour), and returned apart in nanoseconds: the derived event_id keeps it, so that two
/// events a few milliseconds apart stay two events.
pub fn parse_event_time(text: &str) -> Result<(DateTime<Utc>, u32), String> {
    if let Ok(d) = DateTime::parse_from_rfc3339(text.trim()) {
        let d = d.with_timezone(&Utc);
        let nanos = d.nanosecond();
        // chrono keeps a leap second as :59 with 1 s or more of nanoseconds: cut, it would
        // take the derived id of another event in :59.
        if nanos >= 1_000_000_000 {
            return Err(format!(
                "time {}: a leap second (:60) is not taken; send it as :59",
                show(text)
            ));
        }
        if nanos != 0 {
            return Ok((d.with_nanosecond(0).unwrap_or(d), nanos));
        }
    }
    // Everything else (and its error) as a usage record's time.
    Ok((record::parse_time("time", text)?, 0))
}

/// A time in the API form with its fraction (`20261204T214111.999Z`), for the derived id
/// only; without a fraction, the API form itself.
fn identity_time(api_time: &str, nanos: u32) -> String {
    if nanos == 0 {
        return api_time.to_string();
    }
    let digits = format!("{nanos:09}");
    format!(
        "{}.{}Z",
        api_time.trim_end_matches('Z'),
        digits.trim_end_matches('0')
    )
}

pub fn hour_start(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_minute(0))
        .unwrap_or(t)
}

/// Applies every field rule. `now` bounds the time: not in the future, at most 21 days old
/// (the marketplace would refuse the hour's record with MKT.9004).
pub fn validate(raw: &RawEvent, now: DateTime<Utc>) -> Result<Event, String> {
    // Ids as uploads take them: exact, never trimmed.
    let instance_id = record::exact_id("instance_id", &raw.instance_id)?
        .ok_or("instance_id: missing (required)")?;
    let (t, nanos) = parse_event_time(non_empty(&raw.time).ok_or("time: missing (required)")?)?;
    let units = parse_units(non_empty(&raw.value).ok_or("value: missing (required)")?)?;
    let time = record::format_api_time(t);
    if t > now {
        return Err(format!(
            "time {time} is in the future (rule: time <= now, now is {})",
            record::format_api_time(now)
        ));
    }
    let hour = hour_start(t);
    if record::too_old(hour, now) {
        return Err(format!(
            "time {time} is in an hour more than {MAX_AGE_DAYS} days old (the marketplace refuses its record with MKT.9004)"
        ));
    }
    let relate =
        record::exact_id("relate_pkg_instance", &raw.relate_pkg_instance)?.map(str::to_string);
    let event_id = match record::exact_id("event_id", &raw.event_id)? {
        Some(id) => id.to_string(),
        None => derive_event_id(
            instance_id,
            &identity_time(&time, nanos),
            units,
            relate.as_deref(),
        ),
    };
    Ok(Event {
        event_id,
        instance_id: instance_id.to_string(),
        time,
        hour: record::format_api_time(hour),
        units,
        relate_pkg_instance: relate,
    })
}

/// A document read: its valid events and its bad lines, each with its line number.
pub type Parsed = (Vec<(u64, Event)>, Vec<(u64, String)>);

/// Reads a whole document of events (a spool file, a `POST /events` body): JSON lines, or CSV
/// with a header. Every line is checked; the answer is the events, or every bad line.
pub fn parse_document(text: &str, csv: bool, now: DateTime<Utc>) -> Parsed {
    let mut events = Vec::new();
    let mut errors = Vec::new();
    let mut cols: Option<Vec<String>> = None;
    for (i, line) in text.lines().enumerate() {
        let no = i as u64 + 1;
        let line = if no == 1 {
            line.trim_start_matches('\u{feff}')
        } else {
            line
        };
        if line.trim().is_empty() {
            continue;
        }
        let raw = if csv {
            match &cols {
                None => {
                    match parse_csv_header(line) {
                        Ok(c) => cols = Some(c),
                        Err(m) => {
                            errors.push((no, m));
                            return (events, errors);
                        }
                    }
                    continue;
                }
                Some(c) => parse_csv_row(c, line),
            }
        } else {
            parse_json_line(line)
        };
        match raw.and_then(|r| validate(&r, now)) {
            Ok(e) => events.push((no, e)),
            Err(m) => errors.push((no, m)),
        }
    }
    (events, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        record::parse_time("now", "20260110T123000Z").unwrap()
    }

    #[test]
    fn units_are_exact_and_zero_is_allowed() {
        assert_eq!(parse_units("1.5").unwrap(), 15_000);
        assert_eq!(parse_units("0").unwrap(), 0);
        assert_eq!(parse_units("0.000").unwrap(), 0);
        assert_eq!(parse_units("0.0001").unwrap(), 1);
        assert_eq!(parse_units("99999999.9999").unwrap(), 999_999_999_999);
        assert!(parse_units("-1").unwrap_err().starts_with("value "));
        assert!(parse_units("-1")
            .unwrap_err()
            .contains("decimal number >= 0"));
        assert!(parse_units("1.23456").unwrap_err().contains("4 decimals"));
        assert!(parse_units("abc").is_err());
        assert!(parse_units(".").is_err());
        assert_eq!(format_units(15_000), "1.5");
        assert_eq!(format_units(30_000), "3");
        assert_eq!(format_units(1), "0.0001");
    }

    #[test]
    fn events_follow_the_record_rules_under_their_own_names() {
        let raw = |t: &str, v: &str| RawEvent {
            instance_id: Some("i-1".into()),
            time: Some(t.into()),
            value: Some(v.into()),
            ..Default::default()
        };
        let e = validate(&raw("2026-01-10T19:20:00+08:00", "2.50"), now()).unwrap();
        assert_eq!(
            (e.time.as_str(), e.hour.as_str(), e.units),
            ("20260110T112000Z", "20260110T110000Z", 25_000)
        );
        assert!(e.event_id.starts_with("evt-") && e.event_id.len() == 36);
        // The same content gives the same id; another value another one.
        let again = validate(&raw("20260110T112000Z", "2.5"), now()).unwrap();
        assert_eq!(e.event_id, again.event_id);
        let other = validate(&raw("20260110T112000Z", "2.6"), now()).unwrap();
        assert_ne!(e.event_id, other.event_id);
        assert!(validate(&raw("20260110T130000Z", "1"), now())
            .unwrap_err()
            .contains("future"));
        assert!(validate(&raw("20251215T100000Z", "1"), now())
            .unwrap_err()
            .contains("21 days"));
        assert!(validate(&raw("soon", "1"), now())
            .unwrap_err()
            .starts_with("time "));
        let mut no_inst = raw("20260110T112000Z", "1");
        no_inst.instance_id = None;
        assert!(validate(&no_inst, now())
            .unwrap_err()
            .contains("instance_id"));
        // Ids are taken exactly, as uploads take them: never trimmed.
        for field in ["instance_id", "event_id", "relate_pkg_instance"] {
            let mut spaced = raw("20260110T112000Z", "1");
            let id = Some(" i-1".to_string());
            match field {
                "instance_id" => spaced.instance_id = id,
                "event_id" => spaced.event_id = id,
                _ => spaced.relate_pkg_instance = id,
            }
            let e = validate(&spaced, now()).unwrap_err();
            assert!(
                e.starts_with(&format!(
                    "{field} \" i-1\": starts or ends with white space"
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn fractions_of_a_second_are_cut_off_and_kept_apart_in_the_derived_id() {
        let raw = |t: &str| RawEvent {
            instance_id: Some("i-1".into()),
            time: Some(t.into()),
            value: Some("1".into()),
            ..Default::default()
        };
        // JavaScript's toISOString(): the last millisecond of an hour stays in that hour.
        let e = validate(&raw("2026-01-10T10:59:59.999Z"), now()).unwrap();
        assert_eq!(
            (e.time.as_str(), e.hour.as_str()),
            ("20260110T105959Z", "20260110T100000Z")
        );
        let e = validate(&raw("2026-01-10T18:59:59.5+08:00"), now()).unwrap();
        assert_eq!(e.hour, "20260110T100000Z");
        // Two events in one second are two events; the same one written with more or
        // fewer zeros is one, and a whole second keeps the id it always had.
        let id = |t: &str| validate(&raw(t), now()).unwrap().event_id;
        assert_ne!(
            id("2026-01-10T10:00:00.100Z"),
            id("2026-01-10T10:00:00.200Z")
        );
        assert_eq!(
            id("2026-01-10T10:00:00.1Z"),
            id("2026-01-10T10:00:00.100000Z")
        );
        // A leap second is refused, never taken as another event's :59.1.
        for t in ["2026-01-10T10:59:60Z", "2026-01-10T10:59:60.5Z"] {
            let e = validate(&raw(t), now()).unwrap_err();
            assert!(
                e.starts_with(&format!("time \"{t}\": a leap second")),
                "{e}"
            );
            assert!(!e.contains('\n'), "{e}");
        }
        assert_eq!(
            id("2026-01-10T10:00:00.000Z"),
            derive_event_id("i-1", "20260110T100000Z", UNITS, None)
        );
        assert_eq!(
            id("2026-01-10T10:00:00.25Z"),
            derive_event_id("i-1", "20260110T100000.25Z", UNITS, None)
        );
        // Still in the future when its whole second is.
        assert!(validate(&raw("2026-01-10T12:30:01.5Z"), now())
            .unwrap_err()
            .contains("future"));
        assert!(validate(&raw("2026-01-10T10:00:00.Z"), now())
            .unwrap_err()
            .contains("not a time"));
    }

    #[test]
    fn the_largest_value_of_a_record() {
        assert_eq!(format_units(MAX_UNITS), "99999999.9999");
        assert_eq!(parse_units("99999999.9999").unwrap(), MAX_UNITS);
    }

    #[test]
    fn documents_in_both_formats() {
        let (ev, err) = parse_document(
            "\u{feff}instance_id,time,value\ni-1,20260110T110000Z,1\ni-1,20260110T110500Z,x\n",
            true,
            now(),
        );
        assert_eq!(ev.len(), 1);
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].0, 3);
        let (ev, err) = parse_document(
            "{\"instance_id\":\"i-1\",\"time\":\"20260110T110000Z\",\"value\":2,\"event_id\":\"e1\"}\n\n{\"instance_id\":\"i-1\",\"time\":\"20260110T110000Z\",\"value\":1,\"value\":2}\n",
            false,
            now(),
        );
        assert_eq!(ev[0].1.event_id, "e1");
        assert!(err[0].1.contains("appears twice"), "{err:?}");
        let (_, err) = parse_document("instance_id,when,value\n", true, now());
        assert!(err[0].1.contains("not an event field"));
    }
}
