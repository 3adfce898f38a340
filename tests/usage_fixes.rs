//! Review fixes: records past the 21-day window, replaced rejected records, endpoint and
//! flag checks, input strictness and the stand-in's fault names.

mod usage_common;

use usage_common::*;

/// Two days after NOW: a record that began 20 days before NOW is then 22 days old.
const LATER: &str = "2026-01-12T12:30:00Z";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Journals the file's records as pending (the upload cannot connect).
fn journal_pending(env: &Env, file: &str) {
    let o = csm(env.dir())
        .args(["usage", "upload", file, "--journal"])
        .arg(&env.journal)
        .arg("--key-file")
        .arg(&env.key)
        .args(["--endpoint", &format!("http://127.0.0.1:{}", free_port())])
        .args(["--retries", "0", "--backoff-ms", "1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{:?}", text(&o));
}

fn market_at(env: &Env, now: &str) -> Server {
    let mut cmd = csm(env.dir());
    cmd.env("CSM_NOW", now)
        .args([
            "serve",
            "marketplace",
            "--listen",
            "127.0.0.1:0",
            "--key-file",
        ])
        .arg(&env.key)
        .arg("--state")
        .arg(&env.market);
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = common::announced_url(&mut child);
    Server { child, base }
}

#[test]
fn a_record_past_21_days_is_rejected_locally_and_does_not_block_its_batch() {
    let env = Env::new();
    let f = env.write(
        "u.csv",
        "instance_id,begin_time,end_time,usage_value,metering_sn\n\
         i-1,20251221T100000Z,20251221T110000Z,1,sn-old\n\
         i-1,20260110T090000Z,20260110T100000Z,2,sn-b\n\
         i-2,20260110T090000Z,20260110T100000Z,3,sn-c\n",
    );
    journal_pending(&env, f.to_str().unwrap());
    let server = market_at(&env, LATER);
    let o = csm(env.dir())
        .env("CSM_NOW", LATER)
        .args(["usage", "replay", "--journal"])
        .arg(&env.journal)
        .arg("--key-file")
        .arg(&env.key)
        .args(["--endpoint", &server.base, "--backoff-ms", "1"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(5), "{out} {err}");
    assert_eq!(count(&env.market, "SELECT count(*) FROM usage_records"), 2);
    assert_eq!(
        count(
            &env.market,
            "SELECT count(*) FROM usage_records WHERE metering_sn = 'sn-old'"
        ),
        0
    );
    assert_eq!(
        count(
            &env.journal,
            "SELECT count(*) FROM records WHERE metering_sn = 'sn-old' AND state = 'rejected' \
             AND last_code = 'MKT.9004' AND last_message LIKE '%21 days%'"
        ),
        1
    );
    assert_eq!(
        count(
            &env.journal,
            "SELECT count(*) FROM records WHERE state = 'accepted'"
        ),
        2
    );
}

#[test]
fn a_rejected_record_that_may_have_been_delivered_cannot_be_replaced_under_its_sn() {
    let env = Env::new();
    let first = env.write(
        "u.csv",
        "instance_id,begin_time,end_time,usage_value,metering_sn\n\
         i-1,20260110T090000Z,20260110T100000Z,1,sn-a\n",
    );
    {
        // The first attempt is dropped after the stand-in's answer (maybe delivered); the
        // retry is answered 012 (every instance refused).
        let server = env.market(&["drop-after-store=2", "partial-rejects=1"]);
        let o = env.usage(&["upload", first.to_str().unwrap()], Some(&server));
        assert_eq!(o.status.code(), Some(5), "{:?}", text(&o));
    }
    assert_eq!(
        count(
            &env.journal,
            "SELECT count(*) FROM records WHERE state = 'rejected' AND maybe_delivered = 1"
        ),
        1
    );
    let before = dump(&env.journal);
    let fixed = env.write(
        "fixed.csv",
        "instance_id,begin_time,end_time,usage_value,metering_sn\n\
         i-1,20260110T090000Z,20260110T100000Z,2,sn-a\n",
    );
    let server = env.market(&[]);
    let o = env.usage(&["upload", fixed.to_str().unwrap()], Some(&server));
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out} {err}");
    assert!(err.contains("fixed.csv:2"), "{err}");
    assert!(err.contains("sn-a"), "{err}");
    assert!(err.contains("new metering_sn"), "{err}");
    assert_eq!(dump(&env.journal), before);
    assert_eq!(count(&env.market, "SELECT count(*) FROM usage_records"), 0);
}
