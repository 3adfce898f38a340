//! The send loop: batches from the journal, signed, sent, and each record's outcome stored.
//! Network errors and 5xx are retried with exponential backoff and jitter, a bounded number
//! of times; after that the run stops and the records wait in the journal for `replay`.

use super::batch::{self, BatchVerdict, Fix, Outcome, ValueAs, MIN_BATCH};
use super::journal::{Journal, LocalRefusal, Scope, Stored};
use super::record;
use crate::clock;
use crate::error::{CsmError, Result};
use crate::interrupt::Interrupt;
use crate::net::NetKind;
use crate::secret::Secret;
use rand::Rng;
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Answers larger than this are not read further (a usage answer is small).
const MAX_ANSWER: u64 = 4 * 1024 * 1024;

pub struct SendConfig {
    /// Full URL of the usage push API.
    pub url: String,
    pub key: Secret,
    pub batch: usize,
    /// Further attempts of one batch after the first, on network errors and 5xx.
    pub retries: u32,
    /// First pause between attempts; doubles each time up to `max_backoff`, with jitter.
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub timeout: Duration,
    /// An extra trusted root (PEM) from `--ca-file`.
    pub ca_pem: Option<Vec<u8>>,
    pub value_as: ValueAs,
    /// API Gateway AK/SK signing on top of the body signature (decision 6, by flag).
    pub apig: Option<ApigKeys>,
}

pub struct ApigKeys {
    pub ak: String,
    pub sk: Secret,
}

/// The API Gateway headers for a usage push whose `signature`/`ts`/`nonce` are already set:
/// those are signed too, with `content-type`, `host` and `x-sdk-date` (spec §4.2, §5).
pub fn apig_headers(
    keys: &ApigKeys,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    sdk_date: &str,
) -> Result<Vec<(String, String)>> {
    // Signed as the gateway sees it (lower case, no default port), as for the license APIs.
    let host = crate::protocol::apig::host_header_value(url).ok_or_else(|| {
        CsmError::usage(format!("--endpoint {url:?}: no host to sign for --apig"))
    })?;
    let mut all: Vec<(String, String)> = headers.to_vec();
    all.push(("Host".into(), host));
    all.push(("X-Sdk-Date".into(), sdk_date.to_string()));
    let names: Vec<String> = all.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
    let authorization = crate::protocol::apig::authorization(
        &keys.ak,
        keys.sk.expose(),
        "POST",
        url,
        &all,
        &names,
        body,
    )?;
    Ok(vec![
        ("X-Sdk-Date".into(), sdk_date.to_string()),
        ("Authorization".into(), authorization),
    ])
}

#[derive(Debug, Default)]
pub struct SendReport {
    pub requests: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Records answered "try again later" (they stay in the journal for `replay`).
    pub retry_later: u64,
    /// Records of this run by (outcome, code): per-record codes and batch codes.
    pub by_code: BTreeMap<(&'static str, String), u64>,
    /// Requests not answered record by record, by code: no usable answer (timeout, 5xx,
    /// throttling), or the batch refused as a whole (MKT.9003 and sent again in smaller
    /// batches, MKT.9004, a refused signature). Requests, not records, as a batch may fail
    /// several times before it gets through: `requests` is the answered ones plus these.
    pub failed_attempts: BTreeMap<String, u64>,
    /// The marketplace could not be reached, or kept failing, after the retries (the
    /// message says which).
    pub unreachable: Option<String>,
    /// The marketplace refused the requests themselves (signature, permission, no usage API
    /// there): what it said, and what to change.
    pub refused: Option<(String, Fix)>,
    /// Ctrl-C stopped the run: no batch was started after it, and the answers to those in
    /// flight were stored (one without a definite answer leaves its records `sent`).
    pub interrupted: bool,
    /// The marketplace refused the batch size (MKT.9003) and batches of this size went
    /// instead.
    pub batch_fell_back_to: Option<usize>,
}

/// The pause before attempt `attempt + 1`: exponential, capped, with "equal jitter"
/// (between half and all of the step), so that many senders do not retry in step.
pub fn backoff_delay(base: Duration, cap: Duration, attempt: u32, unit_random: f64) -> Duration {
    let step = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(cap);
    step.mul_f64(0.5 + 0.5 * unit_random.clamp(0.0, 1.0))
}

/// The client of the usage pushes: the crate's policy (no redirects, timeouts, TLS, proxy).
pub fn client(cfg: &SendConfig) -> Result<reqwest::blocking::Client> {
    let url = reqwest::Url::parse(&cfg.url)
        .map_err(|e| CsmError::usage(format!("--endpoint {:?}: not a URL ({e})", cfg.url)))?;
    crate::net::Settings::new(cfg.timeout)
        .with_ca(cfg.ca_pem.clone())
        .blocking(&url)
        .map_err(CsmError::Config)
}

fn now_s() -> String {
    record::format_api_time(clock::now())
}

/// Requests in flight at once: the next batch is journaled, signed and sent while the
/// marketplace still works on the previous one, so that neither side waits for the other.
const DEPTH: usize = 2;

/// One attempt of one batch, to be launched.
struct Job {
    batch: Vec<Stored>,
    attempt: u32,
    /// Not launched before this (backoff): the records are journaled `sent` and the request
    /// signed only when it is due, so a kill while waiting leaves them `pending`.
    not_before: Instant,
}

/// What came back for one request, before any classification.
enum Answer {
    Http {
        status: u16,
        /// The `Location` of a 3xx (never followed).
        location: Option<String>,
        body: Vec<u8>,
    },
    Failed {
        reached: bool,
        code: String,
        reason: String,
    },
}

struct Flight {
    job: Job,
    ids: Vec<i64>,
    batch_id: i64,
    handle: std::thread::JoinHandle<Answer>,
}

/// Sends an attempt already journaled (its records `sent` under `batch_id`) on its own
/// thread.
fn launch(
    http: &reqwest::blocking::Client,
    cfg: &SendConfig,
    job: Job,
    batch_id: i64,
) -> Result<Flight> {
    let ids: Vec<i64> = job.batch.iter().map(|s| s.id).collect();
    let records: Vec<_> = job.batch.iter().map(|s| s.record.clone()).collect();
    let body = batch::body_string(&records, cfg.value_as);
    let ts = clock::now_ms().to_string();
    let nonce = clock::uuid();
    let signature = batch::sign(cfg.key.expose(), &body, &ts, &nonce);
    let mut headers: Vec<(String, String)> = vec![
        ("Content-Type".into(), "application/json".into()),
        ("signature".into(), signature),
        ("ts".into(), ts),
        ("nonce".into(), nonce),
    ];
    if let Some(keys) = &cfg.apig {
        let date = crate::protocol::apig::format_sdk_date(clock::now());
        let extra = apig_headers(keys, &cfg.url, &headers, body.as_bytes(), &date)?;
        headers.extend(extra);
    }
    // A connection that fails through a proxy names the proxy.
    let via = crate::net::proxy_named(&cfg.url);
    let mut req = http.post(&cfg.url);
    for (n, v) in &headers {
        req = req.header(n.as_str(), v.as_str());
    }
    let req = req.body(body);
    let handle = std::thread::spawn(move || match req.send() {
        Err(e) => {
            let reached = !e.is_connect();
            let mut f = crate::net::failure::from_reqwest(e);
            if let (false, Some(p)) = (reached, &via) {
                f = f.within(p);
            }
            Answer::Failed {
                reached,
                code: match f.kind {
                    NetKind::Timeout => "timeout",
                    _ => "network",
                }
                .into(),
                reason: f.message,
            }
        }
        Ok(resp) => {
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            let mut body = Vec::new();
            match resp.take(MAX_ANSWER).read_to_end(&mut body) {
                Ok(_) => Answer::Http {
                    status,
                    location,
                    body,
                },
                Err(e) => Answer::Failed {
                    reached: true,
                    code: "network".into(),
                    reason: format!("answer cut off: {e}"),
                },
            }
        }
    });
    Ok(Flight {
        job,
        ids,
        batch_id,
        handle,
    })
}

const OLD_REASON: &str = "begin_time is more than 21 days old (not sent: the marketplace \
                          refuses it with MKT.9004)";

/// The record's begin_time is outside the marketplace's 21-day window at `now`.
fn too_old(s: &Stored, now: chrono::DateTime<chrono::Utc>) -> bool {
    record::past_age_limit(&s.record.begin_time, now)
}

/// Counts `n` records with outcome `o`.
fn count(rep: &mut SendReport, o: &Outcome, n: u64) {
    let (slot, outcome, code) = match o {
        Outcome::Accepted { code } => (&mut rep.accepted, "accepted", code),
        Outcome::Rejected { code, .. } => (&mut rep.rejected, "rejected", code),
        Outcome::Retry { code, .. } => (&mut rep.retry_later, "retry later", code),
    };
    *slot += n;
    *rep.by_code.entry((outcome, code.clone())).or_default() += n;
}

/// The requests on the wire. Dropped (on an error too) only once each has ended, so that
/// nothing of a run is still out when its leases are given back.
#[derive(Default)]
struct InFlight(std::collections::VecDeque<Flight>);

impl Drop for InFlight {
    fn drop(&mut self) {
        for f in self.0.drain(..) {
            let _ = f.handle.join();
        }
    }
}

/// Sends every record of `scope`, batch by batch, and stores the outcomes.
/// `progress` is told how many records were decided (or left for later) so far.
pub fn send(
    journal: &mut Journal,
    scope: Scope,
    cfg: &SendConfig,
    stop: &Interrupt,
    progress: &mut dyn FnMut(u64),
) -> Result<SendReport> {
    let mut stored = Outcomes::NotYet;
    let sent = send_batches(journal, &mut stored, scope, cfg, stop, progress);
    // Every outcome handed over is stored (or its records are this process's to give back
    // again) before the leases are given back, on an error too.
    let kept = stored.finish(journal);
    // Nothing of this run is on the wire any more: records left `sent` are free for the
    // next pass (of this process or another) at once, not when their lease expires.
    let released = journal.release_leases();
    let rep = sent?;
    kept?;
    released?;
    Ok(rep)
}

fn send_batches(
    journal: &mut Journal,
    stored: &mut Outcomes,
    scope: Scope,
    cfg: &SendConfig,
    stop: &Interrupt,
    progress: &mut dyn FnMut(u64),
) -> Result<SendReport> {
    let http = client(cfg)?;
    let mut rep = SendReport::default();
    let mut batch_size = cfg.batch;
    let mut after_id = 0i64;
    let mut done = 0u64;
    let mut flights = InFlight::default();
    let mut retries: std::collections::VecDeque<Job> = Default::default();
    let mut journal_done = false;
    // Once set, nothing new is launched; what is in flight is still awaited and stored.
    let mut stopping = false;
    loop {
        // Outcomes that cannot be stored: stop claiming, with the writer's error.
        if stored.failed() {
            stored.finish(journal)?;
        }
        if stop.asked() && !stopping {
            stopping = true;
            rep.interrupted = true;
        }
        while !stopping && flights.0.len() < DEPTH {
            // A record whose begin_time already left the 21-day window would make the
            // marketplace refuse the whole batch (MKT.9004): the journal refuses it instead.
            let now = clock::now();
            let old = |s: &Stored| too_old(s, now);
            let refusal = LocalRefusal {
                applies: &old,
                code: "MKT.9004",
                reason: OLD_REASON,
            };
            let (attempt, a) = match retries.pop_front() {
                // Not due yet: take the answers in flight first, else wait here.
                Some(j) if j.not_before > Instant::now() && !flights.0.is_empty() => {
                    retries.push_front(j);
                    break;
                }
                Some(j) => {
                    // The pause before a retry ends early on Ctrl-C.
                    while Instant::now() < j.not_before && !stop.asked() {
                        let left = j.not_before.saturating_duration_since(Instant::now());
                        std::thread::sleep(left.min(Duration::from_millis(100)));
                    }
                    if stop.asked() {
                        retries.push_front(j);
                        break;
                    }
                    (
                        j.attempt,
                        journal.retake(&j.batch, j.attempt, &now_s(), &refusal)?,
                    )
                }
                None if journal_done => break,
                None => {
                    let taken =
                        journal.take_batch(scope, after_id, batch_size, &now_s(), &refusal)?;
                    let Some((last, a)) = taken else {
                        journal_done = true;
                        break;
                    };
                    after_id = last;
                    (1, a)
                }
            };
            for s in &a.refused {
                let (code, reason) = (refusal.code.into(), refusal.reason.into());
                // One the marketplace may hold stays `sent`: undecided, not rejected.
                let o = if s.maybe_delivered {
                    Outcome::Retry { code, reason }
                } else {
                    Outcome::Rejected { code, reason }
                };
                count(&mut rep, &o, 1);
            }
            if !a.refused.is_empty() {
                done += a.refused.len() as u64;
                progress(done);
            }
            let Some(batch_id) = a.batch_id else { continue };
            rep.requests += 1;
            let job = Job {
                batch: a.sent,
                attempt,
                not_before: Instant::now(),
            };
            flights.0.push_back(launch(&http, cfg, job, batch_id)?);
        }
        let Some(f) = flights.0.pop_front() else {
            // Nothing in flight: the run ends here, whole or stopped with work left (a stop
            // may come after the top of the loop looked, during the wait before a retry).
            rep.interrupted |= stop.asked() && !(retries.is_empty() && journal_done);
            break;
        };
        let answer = f.handle.join().unwrap_or_else(|_| Answer::Failed {
            reached: true,
            code: "network".into(),
            reason: "the request thread failed".into(),
        });
        let Flight {
            mut job,
            ids,
            batch_id: bid,
            ..
        } = f;
        let (status, verdict, reached) = match answer {
            Answer::Failed {
                reached,
                code,
                reason,
            } => (None, BatchVerdict::Ambiguous { code, reason }, reached),
            Answer::Http {
                status, location, ..
            } if crate::net::is_redirect(status) => (
                Some(status),
                // Nothing was stored, and sending again cannot help until --endpoint changes.
                BatchVerdict::Fatal {
                    code: format!("HTTP {status}"),
                    reason: format!(
                        "{}; point --endpoint at the address that answers",
                        crate::net::redirect_note(location.as_deref())
                    ),
                    fix: Fix::Endpoint,
                },
                true,
            ),
            Answer::Http { status, body, .. } => {
                let sns: Vec<&str> = job
                    .batch
                    .iter()
                    .map(|s| s.record.metering_sn.as_str())
                    .collect();
                let maybe: Vec<bool> = job.batch.iter().map(|s| s.maybe_delivered).collect();
                (
                    Some(status),
                    batch::classify_response(status, &body, &sns, &maybe),
                    true,
                )
            }
        };
        if let Some(code) = verdict.failed_code() {
            *rep.failed_attempts.entry(code.to_string()).or_default() += 1;
        }
        match verdict {
            BatchVerdict::Records(outcomes) => {
                for o in &outcomes {
                    count(&mut rep, o, 1);
                }
                done += outcomes.len() as u64;
                stored.apply(
                    journal,
                    Answered {
                        batch: bid,
                        ids,
                        outcomes,
                        http_status: status.unwrap_or(0),
                        now: now_s(),
                    },
                )?;
                progress(done);
            }
            BatchVerdict::Resend { code, reason } => {
                journal.mark_refused(bid, &ids, status, &code, &reason, &now_s())?;
                if job.attempt <= cfg.retries {
                    retries.push_back(Job {
                        batch: job.batch,
                        attempt: job.attempt + 1,
                        not_before: Instant::now(),
                    });
                } else {
                    // Left `pending` (or `sent` when maybe delivered) for a later replay.
                    count(&mut rep, &Outcome::Retry { code, reason }, ids.len() as u64);
                    done += ids.len() as u64;
                    progress(done);
                }
            }
            BatchVerdict::Fatal { code, reason, fix } => {
                journal.mark_refused(bid, &ids, status, &code, &reason, &now_s())?;
                *rep.by_code.entry(("refused", code.clone())).or_default() += ids.len() as u64;
                rep.refused = Some((format!("{code}: {reason}"), fix));
                stopping = true;
            }
            BatchVerdict::NotTheApi { code, reason } => {
                journal.mark_ambiguous(bid, &ids, status, &code, &reason, &now_s())?;
                rep.refused = Some((format!("{code}: {reason}"), Fix::Endpoint));
                // Sent and maybe delivered: they wait for a replay, as after retries run out.
                count(&mut rep, &Outcome::Retry { code, reason }, ids.len() as u64);
                done += ids.len() as u64;
                progress(done);
                stopping = true;
            }
            BatchVerdict::TooMany => {
                journal.mark_refused(
                    bid,
                    &ids,
                    status,
                    "MKT.9003",
                    "too many records in one request",
                    &now_s(),
                )?;
                if job.batch.len() > MIN_BATCH {
                    // The 100/1000 limit conflict of the docs: fall back to 100.
                    batch_size = MIN_BATCH;
                    rep.batch_fell_back_to = Some(MIN_BATCH);
                    while !job.batch.is_empty() {
                        let rest = job.batch.split_off(job.batch.len().min(MIN_BATCH));
                        retries.push_back(Job {
                            batch: std::mem::replace(&mut job.batch, rest),
                            attempt: job.attempt + 1,
                            not_before: Instant::now(),
                        });
                    }
                } else {
                    rep.refused = Some((
                        format!(
                            "MKT.9003: the marketplace refuses batches of {} records",
                            job.batch.len()
                        ),
                        Fix::BatchSize,
                    ));
                    stopping = true;
                }
            }
            BatchVerdict::Ambiguous { code, reason } => {
                if reached {
                    journal.mark_ambiguous(bid, &ids, status, &code, &reason, &now_s())?;
                    for s in &mut job.batch {
                        s.maybe_delivered = true;
                    }
                } else {
                    // Not even connected: the request cannot have been stored.
                    journal.mark_refused(bid, &ids, status, &code, &reason, &now_s())?;
                }
                if job.attempt > cfg.retries {
                    if rep.unreachable.is_none() {
                        // An answer that kept failing (5xx, throttling) is no unreachable host.
                        let what = if reached {
                            "the marketplace kept failing"
                        } else {
                            "could not reach the marketplace"
                        };
                        let why = if reason == code {
                            reason.clone()
                        } else {
                            format!("{code}: {reason}")
                        };
                        rep.unreachable = Some(format!(
                            "{what}: {} after {}: {why}",
                            cfg.url,
                            crate::output::plural(u64::from(job.attempt), "attempt")
                        ));
                    }
                    stopping = true;
                } else {
                    let r: f64 = rand::thread_rng().gen();
                    retries.push_back(Job {
                        not_before: Instant::now()
                            + backoff_delay(cfg.backoff, cfg.max_backoff, job.attempt, r),
                        attempt: job.attempt + 1,
                        batch: job.batch,
                    });
                }
            }
        }
    }
    Ok(rep)
}

/// A batch's answer, to store.
struct Answered {
    batch: i64,
    ids: Vec<i64>,
    outcomes: Vec<Outcome>,
    http_status: u16,
    now: String,
}

/// Where answered batches are stored. PostgreSQL: on a second connection, on a thread of its
/// own, so that the server stores one batch's outcomes while it claims the next batch on
/// the first connection (each used one core; the send loop waited on one statement at a
/// time). SQLite: in the send loop, on its one connection (a second writer would only wait
/// for the first).
enum Outcomes {
    /// Nothing answered yet: the second connection is opened for the first answer, so that
    /// a pass with nothing to send opens none.
    NotYet,
    /// On the journal's own connection: SQLite, or a second connection that could not be
    /// opened (a full `max_connections`, say).
    Here,
    Elsewhere {
        queue: Option<std::sync::mpsc::SyncSender<Answered>>,
        /// Set by the writer when it stopped storing.
        failed: Arc<AtomicBool>,
        writer: Option<std::thread::JoinHandle<WriterEnd>>,
    },
}

/// How the writer ended: its error, and the records whose outcomes it did not store (still
/// under this process's lease).
struct WriterEnd {
    error: Option<CsmError>,
    unstored: Vec<i64>,
}

/// Stores what comes until the queue closes; after an error, only notes what it did not
/// store.
fn write_outcomes(
    mut second: Journal,
    answered: std::sync::mpsc::Receiver<Answered>,
    failed: &AtomicBool,
) -> WriterEnd {
    let mut end = WriterEnd {
        error: None,
        unstored: Vec::new(),
    };
    for a in answered {
        if end.error.is_none() {
            match second.apply(a.batch, &a.ids, &a.outcomes, a.http_status, &a.now) {
                Ok(()) => continue,
                Err(e) => {
                    end.error = Some(e);
                    failed.store(true, Ordering::Relaxed);
                }
            }
        }
        end.unstored.extend(a.ids);
    }
    end
}

impl Outcomes {
    fn start(journal: &Journal) -> Outcomes {
        let Ok(Some(second)) = journal.second_writer() else {
            return Outcomes::Here;
        };
        // Bounded: the loop waits rather than run far ahead of what is stored.
        let (queue, answered) = std::sync::mpsc::sync_channel::<Answered>(DEPTH);
        let failed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&failed);
        let writer = std::thread::spawn(move || write_outcomes(second, answered, &flag));
        Outcomes::Elsewhere {
            queue: Some(queue),
            failed,
            writer: Some(writer),
        }
    }

    fn apply(&mut self, journal: &mut Journal, a: Answered) -> Result<()> {
        if let Outcomes::NotYet = self {
            *self = Outcomes::start(journal);
        }
        let Outcomes::Elsewhere {
            queue: Some(queue), ..
        } = self
        else {
            return journal.apply(a.batch, &a.ids, &a.outcomes, a.http_status, &a.now);
        };
        // Their leases go with their outcomes, on the other connection.
        journal.no_longer_held(&a.ids);
        if let Err(std::sync::mpsc::SendError(a)) = queue.send(a) {
            // The writer is gone (it panicked): these stay this process's to give back.
            journal.hold(a.ids);
            self.finish(journal)?;
            return Err(CsmError::Storage(format!(
                "journal {}: outcomes were not stored",
                journal.path.display()
            )));
        }
        Ok(())
    }

    /// Closes the queue and waits for the writer, if there is one; outcomes after this are
    /// stored on the journal's own connection (there is no queue left).
    fn stop_writer(&mut self) -> Option<std::thread::Result<WriterEnd>> {
        let Outcomes::Elsewhere { queue, writer, .. } = self else {
            return None;
        };
        // Not `*self = Here`: that would drop this value, and its Drop come back here.
        drop(queue.take());
        writer.take().map(|w| w.join())
    }

    /// The writer stopped storing (an error): [`Outcomes::finish`] says why.
    fn failed(&self) -> bool {
        matches!(self, Outcomes::Elsewhere { failed, writer: Some(_), .. }
            if failed.load(Ordering::Relaxed))
    }

    /// Waits until every outcome handed over is stored; the records of those the writer
    /// could not store are this process's to give back again, and its error is returned.
    fn finish(&mut self, journal: &mut Journal) -> Result<()> {
        match self.stop_writer() {
            None => Ok(()),
            Some(Ok(end)) => {
                journal.hold(end.unstored);
                end.error.map_or(Ok(()), Err)
            }
            Some(Err(_)) => Err(CsmError::Storage(
                "the thread storing outcomes failed".into(),
            )),
        }
    }
}

/// Should a panic unwind through the send loop: the writer still ends before the leases
/// are given back.
impl Drop for Outcomes {
    fn drop(&mut self) {
        let _ = self.stop_writer();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer that accepts every record of attempt `a`.
    fn all_accepted(a: &super::super::journal::Attempt, ids: Vec<i64>) -> Answered {
        let accepted = Outcome::Accepted { code: "000".into() };
        Answered {
            batch: a.batch_id.unwrap(),
            outcomes: vec![accepted; ids.len()],
            ids,
            http_status: 200,
            now: "t".into(),
        }
    }

    /// PostgreSQL: when the second connection cannot store outcomes, the send loop learns it,
    /// the records stay this process's to give back, and the writer's error is the
    /// command's.
    #[test]
    fn outcomes_the_second_connection_cannot_store_come_back_with_its_error() {
        let Some(url) = super::super::journal::pg::test_database("writer_fails") else {
            return;
        };
        let path = std::path::Path::new(&url);
        let mut j = Journal::open(path).unwrap();
        let (a, ids) = super::super::journal::testing::take_two(&mut j);
        assert_eq!(j.held_count(), 2);
        // The writer's statements fail: the table of batches is gone.
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.batch_execute("ALTER TABLE batches RENAME TO batches_gone")
            .unwrap();
        let mut stored = Outcomes::NotYet;
        stored.apply(&mut j, all_accepted(&a, ids)).unwrap();
        assert!(matches!(stored, Outcomes::Elsewhere { .. }));
        assert_eq!(j.held_count(), 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !stored.failed() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(stored.failed());
        let e = stored.finish(&mut j).unwrap_err().to_string();
        assert!(e.contains("batches"), "{e}");
        assert_eq!(j.held_count(), 2);
        c.batch_execute("ALTER TABLE batches_gone RENAME TO batches")
            .unwrap();
        j.release_leases().unwrap();
        let leased: i64 = c
            .query_one(
                "SELECT count(*) FROM records WHERE state = 'sent' AND lease_owner IS NULL",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(leased, 2);
    }

    /// SQLite: outcomes are stored on the journal's one connection, at once.
    #[test]
    fn sqlite_outcomes_are_stored_in_the_loop() {
        let (_dir, mut j) = super::super::journal::testing::journal();
        let (a, ids) = super::super::journal::testing::take_two(&mut j);
        let mut stored = Outcomes::NotYet;
        stored.apply(&mut j, all_accepted(&a, ids)).unwrap();
        assert!(matches!(stored, Outcomes::Here));
        assert_eq!(
            j.counts().unwrap()[&super::super::journal::State::Accepted],
            2
        );
    }

    /// The gateway sees `Host: mkt.example.com` for `https://MKT.example.com:443/…`; that is
    /// the value signed.
    #[test]
    fn apig_signs_the_host_the_gateway_sees() {
        let keys = ApigKeys {
            ak: "AK1".into(),
            sk: Secret::new("sk-1"),
        };
        let url = "https://MKT.example.com:443/api/v1/usage";
        let sent = vec![("Content-Type".to_string(), "application/json".to_string())];
        let extra = apig_headers(&keys, url, &sent, b"{}", "20240317T144237Z").unwrap();
        let mut received = sent.clone();
        received.push(("Host".into(), "mkt.example.com".into()));
        received.extend(extra);
        assert!(crate::protocol::apig::verify("sk-1", "POST", url, &received, b"{}").unwrap());
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let b = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        assert_eq!(backoff_delay(b, cap, 1, 1.0), Duration::from_millis(100));
        assert_eq!(backoff_delay(b, cap, 1, 0.0), Duration::from_millis(50));
        assert_eq!(backoff_delay(b, cap, 3, 1.0), Duration::from_millis(400));
        assert_eq!(backoff_delay(b, cap, 30, 1.0), cap);
        let lo = backoff_delay(b, cap, 2, 0.0);
        let hi = backoff_delay(b, cap, 2, 1.0);
        assert!(lo < hi);
    }
}
