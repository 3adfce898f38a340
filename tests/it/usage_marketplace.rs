//! The stand-in marketplace's usage push API, spoken to directly with signed requests:
//! signature, batch checks, per-record codes and first-wins dedupe.

use crate::usage_common;

use csm::protocol::usage_sig;
use serde_json::{json, Value};
use usage_common::*;

const PATH: &str = "/api/mkp-openapi-public/global/v1/isv/usage-data";

fn post(server: &Server, body: &str, key: &str) -> (u16, Value) {
    let ts = "1768048200000";
    let nonce = "6c63c221-1f6b-4141-8ff4-22f5dfe82b65";
    let sig = usage_sig::sign_body_string(key, body.to_string(), ts, nonce);
    let r = reqwest::blocking::Client::new()
        .post(format!("{}{PATH}", server.url))
        .header("Content-Type", "application/json")
        .header("signature", sig.signature)
        .header("ts", ts)
        .header("nonce", nonce)
        .body(body.to_string())
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, serde_json::from_slice(&r.bytes().unwrap()).unwrap())
}

fn rec(sn: &str, inst: &str, begin: &str, end: &str, value: Value) -> Value {
    json!({"metering_sn": sn, "instance_id": inst, "begin_time": begin, "end_time": end,
           "record_time": "20260110T120000Z", "usage_value": value})
}

fn batch(records: Vec<Value>) -> String {
    json!({ "usage_records": records }).to_string()
}

#[test]
fn signature_batch_and_per_record_rules() {
    let env = Env::new();
    let server = env.market(&[]);
    let ok = rec(
        "a",
        "i-1",
        "20260110T100000Z",
        "20260110T110000Z",
        json!("1.5"),
    );

    // Signature: a wrong key, a body changed after signing, missing headers.
    let (s, v) = post(&server, &batch(vec![ok.clone()]), "not-the-key");
    assert_eq!((s, v["error_code"].as_str()), (400, Some("MKT.0102")));
    let r = reqwest::blocking::Client::new()
        .post(format!("{}{PATH}", server.url))
        .body(batch(vec![ok.clone()]))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = reqwest::blocking::Client::new()
        .get(format!("{}{PATH}", server.url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);

    // Batch level.
    let (s, v) = post(&server, "{\"usage_records\":[]}", KEY);
    assert_eq!((s, v["error_code"].as_str()), (500, Some("MKT.9002")));
    let (s, v) = post(&server, "{\"records\":[]}", KEY);
    assert_eq!((s, v["error_code"].as_str()), (400, Some("MKT.0101")));
    let (s, v) = post(&server, "not json", KEY);
    assert_eq!((s, v["error_code"].as_str()), (400, Some("MKT.0101")));
    let many: Vec<Value> = (0..1001)
        .map(|i| {
            rec(
                &format!("m{i}"),
                "i-9",
                "20260110T100000Z",
                "20260110T110000Z",
                json!(1),
            )
        })
        .collect();
    let (s, v) = post(&server, &batch(many), KEY);
    assert_eq!((s, v["error_code"].as_str()), (500, Some("MKT.9003")));
    let mut extra = ok.clone();
    extra["unit"] = json!("h");
    let (s, v) = post(&server, &batch(vec![extra]), KEY);
    assert_eq!((s, v["error_code"].as_str()), (500, Some("MKT.9002")));
    let old = rec("o", "i-1", "20251201T100000Z", "20251201T110000Z", json!(1));
    let (s, v) = post(&server, &batch(vec![ok.clone(), old]), KEY);
    assert_eq!((s, v["error_code"].as_str()), (500, Some("MKT.9004")));
    assert_eq!(count(&env.market, "SELECT count(*) FROM usage_records"), 0);

    // Per record, in one batch; keys in any order (the signature is over the raw bytes).
    let records = vec![
        ok.clone(),
        rec(
            "b",
            "i-1",
            "2026-01-10T10:00:00Z",
            "20260110T110000Z",
            json!(1),
        ),
        rec(
            "c",
            "i-1",
            "20260110T090000Z",
            "20260110T100000Z",
            json!("-1"),
        ),
        rec("", "i-1", "20260110T080000Z", "20260110T090000Z", json!(1)),
        rec("d", "", "20260110T080000Z", "20260110T090000Z", json!(1)),
        rec("e", "i-1", "20260110T110000Z", "20260110T100000Z", json!(1)),
        rec("f", "i-1", "20260110T110000Z", "20260110T130000Z", json!(1)),
        rec("a", "i-2", "20260110T100000Z", "20260110T110000Z", json!(1)),
        rec("g", "i-1", "20260110T100000Z", "20260110T110000Z", json!(1)),
        rec(
            "h",
            "i-2",
            "20260110T100000Z",
            "20260110T110000Z",
            json!(12.25),
        ),
    ];
    let (s, v) = post(&server, &batch(records), KEY);
    assert_eq!((s, v["error_code"].as_str()), (200, Some("MKT.0000")));
    // Listed: the records not accepted, in batch order, with their codes.
    let codes: Vec<(&str, &str)> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metering_sn"].as_str().unwrap(),
                r["result_code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        codes,
        [
            ("b", "002"),
            ("c", "003"),
            ("", "004"),
            ("d", "001"),
            ("e", "011"),
            ("f", "011"),
            ("a", "005"),
            ("g", "010")
        ]
    );
    assert_eq!(count(&env.market, "SELECT count(*) FROM usage_records"), 2);
    assert_eq!(
        count(
            &env.market,
            "SELECT count(*) FROM usage_records WHERE usage_value = '12.25'"
        ),
        1
    );
    // First wins across requests too.
    let (_, v) = post(&server, &batch(vec![ok]), KEY);
    assert_eq!(v["results"][0]["result_code"], "005");
    assert_eq!(count(&env.market, "SELECT count(*) FROM usage_records"), 2);
}
