//! Batches: the exact body that is signed and sent, and what an answer means for each record.
//! Pure: no I/O.

use super::record::UsageRecord;
use crate::protocol::json::{self, write_string, Json};
use crate::protocol::usage_sig;

/// The usage push path, appended to the endpoint's base URL.
pub const USAGE_PATH: &str = "/api/mkp-openapi-public/global/v1/isv/usage-data";
/// The API's limit per call (§4.3); `--batch` may lower it down to [`MIN_BATCH`].
pub const MAX_BATCH: usize = 1000;
pub const MIN_BATCH: usize = 100;

/// How usage_value is written in the body (decision 6: a number by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ValueAs {
    Number,
    String,
}

/// The body `{"usage_records":[...]}` with keys sorted at every level, compact: the exact
/// bytes that are signed and sent. Written directly (the field names are fixed and already in
/// byte order) so that a 1000-record body costs one pass.
pub fn body_string(records: &[UsageRecord], value_as: ValueAs) -> String {
    let mut out = String::with_capacity(records.len() * 220 + 20);
    out.push_str("{\"usage_records\":[");
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"begin_time\":");
        write_string(&mut out, &r.begin_time);
        out.push_str(",\"end_time\":");
        write_string(&mut out, &r.end_time);
        out.push_str(",\"instance_id\":");
        write_string(&mut out, &r.instance_id);
        out.push_str(",\"metering_sn\":");
        write_string(&mut out, &r.metering_sn);
        out.push_str(",\"record_time\":");
        write_string(&mut out, &r.record_time);
        if let Some(p) = &r.relate_pkg_instance {
            out.push_str(",\"relate_pkg_instance\":");
            write_string(&mut out, p);
        }
        out.push_str(",\"usage_value\":");
        match value_as {
            // Normalised decimal text is a valid JSON number as it stands.
            ValueAs::Number => out.push_str(&r.usage_value),
            ValueAs::String => write_string(&mut out, &r.usage_value),
        }
        out.push('}');
    }
    out.push_str("]}");
    out
}

/// Signs the body text as it stands (the bytes sent are the bytes signed): the signature
/// header's value.
pub fn sign(key: &str, body: &str, ts: &str, nonce: &str) -> String {
    usage_sig::signature(key, body.as_bytes(), ts, nonce).base64()
}

/// What happened to one record of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted {
        code: String,
    },
    /// Refused for good: sending it again unchanged gets the same answer.
    Rejected {
        code: String,
        reason: String,
    },
    /// Not decided: send again later (same metering_sn).
    Retry {
        code: String,
        reason: String,
    },
}

/// What the seller changes before a refused push can go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fix {
    /// The body signature was refused.
    Key,
    /// API Gateway refused the access key or its signature (`--apig`).
    Credentials,
    /// Nothing that takes usage pushes answers at this address.
    Endpoint,
    /// The marketplace takes fewer records per request than csm can send.
    BatchSize,
}

impl Fix {
    /// What the error message leads with.
    pub fn lead(self) -> &'static str {
        match self {
            Fix::Key | Fix::Credentials | Fix::BatchSize => "the marketplace refused the requests",
            Fix::Endpoint => "no usage API answers at the endpoint",
        }
    }

    pub fn hint(self) -> &'static str {
        match self {
            Fix::Key => "check --key-file: the usage push is signed with the key bound to the basic interfaces",
            Fix::Credentials => "API Gateway refused the access key or its signature: pass --apig with --ak and --sk-file, or check them",
            Fix::Endpoint => "check --endpoint (or the profile's marketplace endpoint): the base URL of the marketplace open APIs (csm appends the API path)",
            Fix::BatchSize => "send smaller batches with --batch",
        }
    }
}

/// What an answer to a whole batch means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchVerdict {
    /// The marketplace answered about the records: one outcome per record, in batch order.
    Records(Vec<Outcome>),
    /// No definite answer (network error, 5xx, throttling): the batch may or may not be
    /// stored; send it again after a pause.
    Ambiguous { code: String, reason: String },
    /// The request itself was refused (signature, permissions, no usage API there): nothing
    /// was stored and resending cannot help until `fix` is done.
    Fatal {
        code: String,
        reason: String,
        fix: Fix,
    },
    /// Too many records for this marketplace (MKT.9003): send smaller batches.
    TooMany,
    /// A 2xx answer without the usage API's `error_code`: another server answers at this
    /// address (a merchant endpoint, a web page). Whether the batch was stored cannot be
    /// told, so its records stay maybe delivered; sending again cannot help until
    /// `--endpoint` changes.
    NotTheApi { code: String, reason: String },
    /// Refused as a whole, nothing stored, worth sending again as it is (MKT.9004: a
    /// begin_time the marketplace's clock finds older than 21 days; csm's own check found
    /// none, so which record is meant is not known).
    Resend { code: String, reason: String },
}

impl BatchVerdict {
    /// The code of a request not answered record by record (`failed_attempts`): every
    /// verdict but [`BatchVerdict::Records`].
    pub fn failed_code(&self) -> Option<&str> {
        match self {
            BatchVerdict::Records(_) => None,
            BatchVerdict::TooMany => Some("MKT.9003"),
            BatchVerdict::Ambiguous { code, .. }
            | BatchVerdict::Fatal { code, .. }
            | BatchVerdict::NotTheApi { code, .. }
            | BatchVerdict::Resend { code, .. } => Some(code),
        }
    }
}

/// Per-record result codes 001-013 (from the marketplace's SDR error list, see docs/usage.md;
/// `000` is the stand-in's code for "accepted").
pub fn record_code_meaning(code: &str) -> &'static str {
    match code {
        "000" => "accepted",
        "001" => "instance not found",
        "002" => "bad time format",
        "003" => "bad usage value",
        "004" => "metering_sn missing",
        "005" => "duplicate metering_sn",
        "006" => "product delisted",
        "007" => "record time expired",
        "008" => "undocumented code",
        "009" => "instance does not belong to this seller",
        "010" => "duplicate record (same instance and period)",
        "011" => "invalid time range",
        "012" => "instance is not pay-per-use",
        "013" => "instance in a state that takes no usage",
        _ => "unknown code",
    }
}

/// Classifies one per-record code. `maybe_delivered`: an earlier attempt of this record
/// got no definite answer, so a "duplicate metering_sn" is our own earlier delivery.
pub fn classify_record(code: &str, msg: &str, maybe_delivered: bool) -> Outcome {
    let reason = if msg.is_empty() {
        record_code_meaning(code).to_string()
    } else {
        msg.to_string()
    };
    match code {
        "000" => Outcome::Accepted { code: code.into() },
        "005" if maybe_delivered => Outcome::Accepted { code: code.into() },
        // The instance may come back to a state that takes usage.
        "013" => Outcome::Retry {
            code: code.into(),
            reason,
        },
        "001" | "002" | "003" | "004" | "005" | "006" | "007" | "009" | "010" | "011" | "012" => {
            Outcome::Rejected {
                code: code.into(),
                reason,
            }
        }
        // An unknown code is not proof of refusal: keep the record for another try.
        _ => Outcome::Retry {
            code: code.into(),
            reason: format!("unknown per-record code {code:?}: {reason}"),
        },
    }
}

/// Reads the answer to a batch of `n` records with the given metering_sns.
/// `maybe_delivered[i]` as in [`classify_record`].
pub fn classify_response(
    status: u16,
    body: &[u8],
    sns: &[&str],
    maybe_delivered: &[bool],
) -> BatchVerdict {
    let parsed = json::parse(body).ok();
    let code = parsed
        .as_ref()
        .and_then(|j| j.get("error_code"))
        .and_then(Json::scalar_text)
        .unwrap_or_default();
    let msg = parsed
        .as_ref()
        .and_then(|j| j.get("error_msg"))
        .and_then(Json::scalar_text)
        .unwrap_or_default();
    let label = if code.is_empty() {
        format!("HTTP {status}")
    } else {
        code.clone()
    };
    let reason = if msg.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {msg}")
    };
    let whole = |o: Outcome| BatchVerdict::Records(vec![o; sns.len()]);
    match (status, code.as_str()) {
        (200, "MKT.0000") => {
            // The real API answers only for the batch (data problems surface later in the
            // seller centre); the stand-in adds per-record results. A record the answer does
            // not mention was accepted.
            let mut out: Vec<Outcome> = (0..sns.len())
                .map(|_| Outcome::Accepted {
                    code: "MKT.0000".into(),
                })
                .collect();
            if let Some(Json::Array(results)) = parsed.as_ref().and_then(|j| j.get("results")) {
                let mut next = 0usize;
                for r in results {
                    let Some(sn) = r.get("metering_sn").and_then(Json::as_str) else {
                        continue;
                    };
                    let rc = r
                        .get("result_code")
                        .and_then(Json::scalar_text)
                        .unwrap_or_default();
                    let rm = r
                        .get("result_msg")
                        .and_then(Json::scalar_text)
                        .unwrap_or_default();
                    // Batches never hold one metering_sn twice (the journal is unique on it).
                    // Answers usually keep the batch order: look there first.
                    let i = if sns.get(next) == Some(&sn) {
                        Some(next)
                    } else {
                        sns.iter().position(|s| *s == sn)
                    };
                    if let Some(i) = i {
                        next = i + 1;
                        out[i] = classify_record(&rc, &rm, maybe_delivered[i]);
                    }
                }
            }
            BatchVerdict::Records(out)
        }
        (401 | 403, gateway) if gateway.starts_with("APIGW.") => BatchVerdict::Fatal {
            code: label,
            reason,
            fix: Fix::Credentials,
        },
        (_, "MKT.0102" | "MKT.0150" | "MKT.0151" | "MKT.0154") | (401 | 403, _) => {
            BatchVerdict::Fatal {
                code: label,
                reason,
                fix: Fix::Key,
            }
        }
        (_, "MKT.9003") => BatchVerdict::TooMany,
        (_, "MKT.9004") => BatchVerdict::Resend {
            code: label,
            reason,
        },
        (_, "MKT.0100" | "MKT.0101" | "MKT.0199" | "MKT.9001" | "MKT.9002") => {
            whole(Outcome::Rejected {
                code: label,
                reason,
            })
        }
        (406 | 429, _) | (_, "MKT.0250") => BatchVerdict::Ambiguous {
            code: label,
            reason,
        },
        (s, _) if s >= 500 => BatchVerdict::Ambiguous {
            code: label,
            reason,
        },
        // No usage API at this URL: nothing was stored, and resending cannot help until
        // --endpoint changes.
        (404 | 405, _) => BatchVerdict::Fatal {
            code: label,
            fix: Fix::Endpoint,
            reason: if msg.is_empty() {
                "no usage API at this address; check --endpoint".into()
            } else {
                format!("{msg}: no usage API at this address; check --endpoint")
            },
        },
        // 408 and any other 4xx: not proof that nothing was stored.
        (s, _) if (400..500).contains(&s) => BatchVerdict::Ambiguous {
            code: label,
            reason,
        },
        (200..=299, "") => BatchVerdict::NotTheApi {
            code: label,
            reason: format!(
                "an answer without the usage API's error_code: {:?}",
                excerpt(body)
            ),
        },
        // A 2xx/3xx without a success code: not proof of anything.
        _ => BatchVerdict::Ambiguous {
            code: label,
            reason: format!("{reason} (unexpected answer)"),
        },
    }
}

/// The start of an answer's body, on one line, for an error message.
fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 80;
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.chars().count() > MAX {
        out = out.chars().take(MAX).collect::<String>() + "…";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::json::canonical_sorted;

    fn rec(sn: &str, value: &str) -> UsageRecord {
        UsageRecord {
            instance_id: "7f141bf1-aec8-4859-8323-fb3a8ad50721".into(),
            begin_time: "20220809T080000Z".into(),
            end_time: "20220809T090000Z".into(),
            usage_value: value.into(),
            metering_sn: sn.into(),
            sn_derived: false,
            relate_pkg_instance: None,
            record_time: "20220809T091000Z".into(),
        }
    }

    /// The direct writer gives the same bytes as the generic sorted writer.
    #[test]
    fn body_matches_canonical_sorted() {
        let mut s = String::new();
        write_string(&mut s, "a\"b\\c\u{1}d");
        assert_eq!(s, r#""a\"b\\c\u0001d""#);
        let mut a = rec("sn-1", "99");
        a.relate_pkg_instance = Some("pkg-\"1\"".into());
        let b = rec("计量-2", "0.25");
        for mode in [ValueAs::Number, ValueAs::String] {
            let body = body_string(&[a.clone(), b.clone()], mode);
            let parsed = json::parse(body.as_bytes()).unwrap();
            assert_eq!(body, canonical_sorted(&parsed));
        }
    }

    #[test]
    fn vectors() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/usage_push_signature.json"
        ))
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut checked = 0;
        for case in v["cases"].as_array().unwrap() {
            let recs: Vec<UsageRecord> = case["body"]["usage_records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| UsageRecord {
                    instance_id: r["instance_id"].as_str().unwrap().into(),
                    begin_time: r["begin_time"].as_str().unwrap().into(),
                    end_time: r["end_time"].as_str().unwrap().into(),
                    usage_value: match &r["usage_value"] {
                        serde_json::Value::String(s) => s.clone(),
                        n => n.to_string(),
                    },
                    metering_sn: r["metering_sn"].as_str().unwrap().into(),
                    sn_derived: false,
                    relate_pkg_instance: r["relate_pkg_instance"].as_str().map(String::from),
                    record_time: r["record_time"].as_str().unwrap().into(),
                })
                .collect();
            let mode = if case["body"]["usage_records"][0]["usage_value"].is_string() {
                ValueAs::String
            } else {
                ValueAs::Number
            };
            let body = body_string(&recs, mode);
            assert_eq!(
                body,
                case["body_string"].as_str().unwrap(),
                "{}",
                case["name"]
            );
            let s = sign(
                case["key"].as_str().unwrap(),
                &body,
                case["ts"].as_str().unwrap(),
                case["nonce"].as_str().unwrap(),
            );
            assert_eq!(s, case["signature"].as_str().unwrap());
            checked += 1;
        }
        assert!(checked >= 10);
    }

    #[test]
    fn per_record_results() {
        let body = br#"{"error_code":"MKT.0000","error_msg":"success","results":[
            {"metering_sn":"a","result_code":"000"},
            {"metering_sn":"b","result_code":"005","result_msg":"duplicate"},
            {"metering_sn":"c","result_code":"005"},
            {"metering_sn":"d","result_code":"001","result_msg":"no such instance"},
            {"metering_sn":"e","result_code":"013"}]}"#;
        let v = classify_response(
            200,
            body,
            &["a", "b", "c", "d", "e", "f"],
            &[false, true, false, false, false, false],
        );
        let BatchVerdict::Records(o) = v else {
            panic!("{v:?}")
        };
        assert!(matches!(o[0], Outcome::Accepted { .. }));
        assert!(matches!(o[1], Outcome::Accepted { .. }));
        assert!(matches!(&o[2], Outcome::Rejected { code, .. } if code == "005"));
        assert!(
            matches!(&o[3], Outcome::Rejected { code, reason } if code == "001" && reason == "no such instance")
        );
        assert!(matches!(o[4], Outcome::Retry { .. }));
        assert!(matches!(o[5], Outcome::Accepted { .. }));
    }

    #[test]
    fn batch_codes() {
        let c = |s, b: &str| classify_response(s, b.as_bytes(), &["a", "b"], &[false; 2]);
        assert!(matches!(
            c(
                400,
                r#"{"error_code":"MKT.0102","error_msg":"Invalid body sign"}"#
            ),
            BatchVerdict::Fatal { fix: Fix::Key, .. }
        ));
        // The gateway refusing the access key points at --ak/--sk-file, not the body key.
        assert!(matches!(
            c(
                401,
                r#"{"error_code":"APIGW.0301","error_msg":"Incorrect IAM authentication information"}"#
            ),
            BatchVerdict::Fatal {
                fix: Fix::Credentials,
                ..
            }
        ));
        assert!(matches!(
            c(500, r#"{"error_code":"MKT.0999"}"#),
            BatchVerdict::Ambiguous { .. }
        ));
        assert!(matches!(c(502, "<html>"), BatchVerdict::Ambiguous { .. }));
        assert!(matches!(
            c(500, r#"{"error_code":"MKT.9003"}"#),
            BatchVerdict::TooMany
        ));
        assert!(matches!(
            c(500, r#"{"error_code":"MKT.9004"}"#),
            BatchVerdict::Resend { code, .. } if code == "MKT.9004"
        ));
        let BatchVerdict::Records(o) = c(500, r#"{"error_code":"MKT.9002"}"#) else {
            panic!()
        };
        assert!(matches!(&o[1], Outcome::Rejected { code, .. } if code == "MKT.9002"));
        assert!(matches!(c(404, ""), BatchVerdict::Fatal { .. }));
        assert!(matches!(c(405, ""), BatchVerdict::Fatal { .. }));
        assert!(matches!(c(408, ""), BatchVerdict::Ambiguous { .. }));
        assert!(matches!(c(418, "{}"), BatchVerdict::Ambiguous { .. }));
        // Another server at this address: no error_code at all. Stop, and say what answered.
        assert!(matches!(
            c(200, r#"{"ok":true}"#),
            BatchVerdict::NotTheApi { .. }
        ));
        let BatchVerdict::NotTheApi { code, reason } = c(
            200,
            "{\"resultCode\":\"000002\",\n \"resultMsg\":\"no callback is served here\"}",
        ) else {
            panic!()
        };
        assert_eq!(code, "HTTP 200");
        assert!(
            reason.contains(r#"{\"resultCode\":\"000002\", \"resultMsg\""#),
            "{reason}"
        );
        assert!(matches!(c(204, ""), BatchVerdict::NotTheApi { .. }));
        // A code of the API's that csm does not know: not proof of anything.
        assert!(matches!(
            c(200, r#"{"error_code":"MKT.1234"}"#),
            BatchVerdict::Ambiguous { .. }
        ));
    }

    #[test]
    fn an_excerpt_is_one_short_line() {
        assert_eq!(
            excerpt(b"<html>\n  <body>x</body>"),
            "<html> <body>x</body>"
        );
        let long = "é".repeat(100);
        let e = excerpt(long.as_bytes());
        assert_eq!(e.chars().count(), 81);
        assert!(e.ends_with('…'));
    }
}
