//! The load engine: an open-loop scheduler (or closed-loop workers for `--rate max`) over a
//! hyper client with at most `--connections` requests in flight, every request freshly
//! generated and signed, every reply judged.

use super::mix::{Item, Mix};
use super::schedule::Schedule;
use super::stats::{ms_at, Ended, Stats};
use crate::catalog::gen::{self, Ctx};
use crate::catalog::Protocol;
use crate::endpoint::client::{Exchange, Reply, MAX_REPLY};
use crate::endpoint::judge::{self, Status};
use crate::endpoint::request::{self, Keys, PrepOpts, Prepared, Tamper};
use crate::interrupt::Interrupt;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use reqwest::Url;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

type Http = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How much to send, how fast.
#[derive(Debug, Clone)]
pub struct Plan {
    pub endpoint: Url,
    pub protocol: Protocol,
    pub keys: Keys,
    pub mix: Mix,
    /// None: `--rate max` (closed loop).
    pub rate: Option<f64>,
    pub ramp: Duration,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    pub connections: usize,
    pub timeout: Duration,
    pub ca_pem: Option<Vec<u8>>,
    pub kit_path_full: bool,
    pub license_inner: crate::protocol::v2::LicenseInner,
    pub stop: Interrupt,
    /// Print a progress line to stderr every second.
    pub progress: bool,
    /// The time requests carry (timestamps, generated dates).
    pub clock: Arc<dyn crate::clock::Clock>,
    /// Nonces, ids and generated values.
    pub entropy: Arc<dyn crate::clock::Entropy>,
}

#[derive(Debug)]
pub struct Outcome {
    pub stats: Stats,
    /// Requests started.
    pub started: u64,
    /// Wall time from the first start to the last end.
    pub elapsed: Duration,
    /// From the first start to the last start, plus one interval: what the rate is over.
    pub sending: Duration,
    pub interrupted: bool,
    /// No reply at all, and the first failure was this kind of transport error.
    pub unreachable: Option<&'static str>,
}

/// Instance ids the endpoint created (newInstance replies), for the calls that need one.
/// An id in use is not released under a call still running.
#[derive(Default)]
struct Instances {
    ids: Vec<(String, u32)>,
}

const MAX_INSTANCES: usize = 10_000;

impl Instances {
    fn checkout(&mut self, release: bool) -> Option<String> {
        if self.ids.is_empty() {
            return None;
        }
        if release {
            let k = self.ids.iter().position(|(_, busy)| *busy == 0)?;
            return Some(self.ids.swap_remove(k).0);
        }
        let k = rand::Rng::gen_range(&mut rand::thread_rng(), 0..self.ids.len());
        self.ids[k].1 += 1;
        Some(self.ids[k].0.clone())
    }

    fn give_back(&mut self, id: &str) {
        if let Some(e) = self.ids.iter_mut().find(|(i, _)| i == id) {
            e.1 = e.1.saturating_sub(1);
        }
    }

    fn add(&mut self, id: String) {
        if self.ids.len() < MAX_INSTANCES {
            self.ids.push((id, 0));
        }
    }
}

struct Shared {
    plan: Plan,
    http: Http,
    slots: Arc<Semaphore>,
    stats: Mutex<Stats>,
    instances: Mutex<Instances>,
    started: AtomicU64,
    in_flight: AtomicU64,
    /// Set once the endpoint is known unreachable: no further request is started.
    abort: Mutex<Option<&'static str>>,
    stopped: AtomicBool,
}

fn connector(plan: &Plan) -> Result<hyper_rustls::HttpsConnector<HttpConnector>, String> {
    let tls = crate::net::tls::client_config(plan.ca_pem.as_deref())?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(plan.timeout));
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// The kind of a transport failure, from the error's chain (no message matching).
fn kind_of(e: &(dyn std::error::Error + 'static)) -> &'static str {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut connect = false;
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            match io.kind() {
                K::ConnectionRefused => return "refused",
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                    return "reset"
                }
                K::TimedOut => return "timeout",
                _ => {}
            }
        }
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() {
                return "reset";
            }
            if h.is_timeout() {
                return "timeout";
            }
        }
        if let Some(l) = err.downcast_ref::<hyper_util::client::legacy::Error>() {
            connect |= l.is_connect();
        }
        cur = err.source();
    }
    if connect {
        "connect"
    } else {
        "protocol"
    }
}

fn unreachable_kind(kind: &str) -> bool {
    matches!(kind, "refused" | "connect")
}

impl Shared {
    /// A fresh, signed request for `item` (and the instance id it borrowed, if any).
    fn prepare(&self, item: &Item) -> Result<(Prepared, Option<String>), String> {
        let p = &self.plan;
        let borrowed = if item.needs_instance() {
            self.instances
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .checkout(item.releases())
        } else {
            None
        };
        // No instance to work on yet: create one instead.
        let (cb, scene) = if item.needs_instance() && borrowed.is_none() {
            (
                crate::catalog::find("newInstance", p.protocol).unwrap_or(item.callback),
                None,
            )
        } else {
            (item.callback, item.scene)
        };
        let key = p
            .keys
            .for_family(cb.family)
            .ok_or_else(|| format!("{}: no key for this callback", cb.name))?;
        let mut ctx = Ctx {
            now: Some(p.clock.now()),
            test_flag: true,
            instance_id: Some(borrowed.clone().unwrap_or_else(|| p.entropy.uuid())),
            v1_key: p.keys.basic.clone(),
            entropy: Arc::clone(&p.entropy),
            ..Ctx::default()
        };
        gen::settle(&mut ctx);
        let fields = gen::generate(cb, scene, &ctx);
        let opts = PrepOpts {
            endpoint: &p.endpoint,
            now_ms: p.clock.now_ms(),
            nonce: p.entropy.nonce_hex64(),
            tamper: Tamper::None,
            kit_path_full: p.kit_path_full,
            license_inner: p.license_inner,
        };
        let prepared = request::prepare(cb, scene, fields, key, &opts).map_err(|e| e.0)?;
        // A released id left the pool at checkout: giving it back finds nothing.
        Ok((prepared, borrowed))
    }

    async fn exchange(&self, p: &Prepared) -> Result<Reply, &'static str> {
        let mut b = hyper::Request::builder().method(p.method).uri(&p.url);
        for (n, v) in &p.headers {
            b = b.header(n.as_str(), v.as_str());
        }
        let req = b
            .body(Full::new(Bytes::from(p.body.clone())))
            .map_err(|_| "protocol")?;
        let resp = self.http.request(req).await.map_err(|e| kind_of(&e))?;
        let status = resp.status().as_u16();
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let (body, truncated) = match Limited::new(resp.into_body(), MAX_REPLY).collect().await {
            Ok(c) => (c.to_bytes().to_vec(), false),
            Err(e) => {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    (Vec::new(), true)
                } else if let Ok(h) = e.downcast::<hyper::Error>() {
                    return Err(kind_of(&*h));
                } else {
                    return Err("reset");
                }
            }
        };
        Ok(Reply {
            status,
            headers,
            body,
            truncated,
            // hyper gives header names in lower case: the Body-Sign name is not judged here.
            header_case_known: false,
        })
    }

    /// Sends one request meant to start at `intended` and records how it ended.
    async fn one(&self, item: Item, intended: Instant) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let prepared = self.prepare(&item);
        let (activity, outcome, service, rejected) = match prepared {
            Err(e) => {
                eprintln!("csm: {e}");
                (item.title(), Err("prepare"), Duration::ZERO, Vec::new())
            }
            Ok((p, borrowed)) => {
                let activity = p.title();
                // Waiting for a free connection counts toward the latency, not the service
                // time; a request that finds none within --timeout is not sent.
                let permit =
                    tokio::time::timeout(self.plan.timeout, self.slots.clone().acquire_owned())
                        .await;
                let (outcome, service) = match permit {
                    Ok(Ok(_permit)) => {
                        let sent = Instant::now();
                        let r = match tokio::time::timeout(self.plan.timeout, self.exchange(&p))
                            .await
                        {
                            Ok(r) => r,
                            Err(_) => Err("timeout"),
                        };
                        (r, sent.elapsed())
                    }
                    _ => (Err("queued"), Duration::ZERO),
                };
                let rejected = self.judge(&p, &outcome, service);
                self.after(&p, &outcome, borrowed);
                let outcome = outcome.map(|r| {
                    let code = judge::reply_json(&r).and_then(|v| {
                        v.get("resultCode")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    });
                    (r.status, code)
                });
                (activity, outcome, service, rejected)
            }
        };
        let latency = intended.elapsed();
        if let Err(kind) = outcome {
            let mut abort = self.abort.lock().unwrap_or_else(|e| e.into_inner());
            let none_yet = self.stats.lock().map(|s| s.replies() == 0).unwrap_or(false);
            if abort.is_none() && none_yet && unreachable_kind(kind) {
                *abort = Some(kind);
            }
        }
        self.stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(Ended {
                activity,
                latency,
                service,
                outcome,
                rejected: &rejected,
            });
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// The judge's rules that fail for this reply (result code 000000 expected).
    fn judge(
        &self,
        p: &Prepared,
        outcome: &Result<Reply, &'static str>,
        service: Duration,
    ) -> Vec<&'static str> {
        let Ok(reply) = outcome else {
            return vec!["reachable"];
        };
        let Some(key) = self.plan.keys.for_family(p.callback.family) else {
            return Vec::new();
        };
        let ex = Exchange {
            request: p.clone(),
            outcome: Ok(reply.clone()),
            latency: service,
        };
        let mut out: Vec<&'static str> =
            judge::judge_one_call(&ex, key.expose(), self.plan.timeout, "000000", false)
                .into_iter()
                .filter(|r| r.status == Status::Fail)
                .map(|r| r.family.id())
                .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Instance bookkeeping: a created id joins the pool, a borrowed one goes back.
    fn after(&self, p: &Prepared, outcome: &Result<Reply, &'static str>, borrowed: Option<String>) {
        let mut inst = self.instances.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = borrowed {
            inst.give_back(&id);
        }
        if p.callback.name == "newInstance" {
            if let Some(id) = outcome
                .as_ref()
                .ok()
                .and_then(judge::reply_json)
                .filter(|v| v["resultCode"] == "000000")
                .and_then(|v| {
                    v.get("instanceId")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
            {
                inst.add(id);
            }
        }
    }

    fn should_stop(&self) -> bool {
        if self.plan.stop.asked() {
            self.stopped.store(true, Ordering::Relaxed);
            return true;
        }
        self.abort.lock().map(|a| a.is_some()).unwrap_or(false)
    }
}

/// Sleeps until `at`, waking every 50 ms to notice Ctrl-C; false when told to stop.
async fn wait_until(s: &Shared, at: Instant) -> bool {
    loop {
        if s.should_stop() {
            return false;
        }
        let now = Instant::now();
        if now >= at {
            return true;
        }
        tokio::time::sleep_until(at.min(now + Duration::from_millis(50))).await;
    }
}

async fn progress(s: Arc<Shared>, start: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let (done, p99, failed) = {
            let st = s.stats.lock().unwrap_or_else(|e| e.into_inner());
            (st.requests, ms_at(&st.latency, 99.0), st.failed)
        };
        let secs = start.elapsed().as_secs_f64();
        eprint!(
            "\r\x1b[2K{secs:>5.0}s  {:>8.1}/s  in flight {:>5}  p99 {:>9.1} ms  failed {failed}",
            done as f64 / secs.max(0.001),
            s.in_flight.load(Ordering::Relaxed),
            p99
        );
    }
}

/// Runs the plan to its end (or Ctrl-C, or an unreachable endpoint).
pub fn run(plan: Plan) -> Result<Outcome, String> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(run_async(plan))
}

async fn run_async(plan: Plan) -> Result<Outcome, String> {
    let http: Http = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(plan.connections)
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector(&plan)?);
    let s = Arc::new(Shared {
        slots: Arc::new(Semaphore::new(plan.connections)),
        http,
        stats: Mutex::new(Stats::default()),
        instances: Mutex::new(Instances::default()),
        started: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        abort: Mutex::new(None),
        stopped: AtomicBool::new(false),
        plan,
    });
    let start = Instant::now();
    let ticker = s
        .plan
        .progress
        .then(|| tokio::spawn(progress(Arc::clone(&s), start)));
    let mut mix = s.plan.mix.clone();
    let mut tasks = tokio::task::JoinSet::new();
    let mut last_start = start;
    let interval;
    match s.plan.rate {
        Some(rate) => {
            let sched = Schedule {
                rate,
                ramp: s.plan.ramp,
            };
            let total = match (s.plan.requests, s.plan.duration) {
                (Some(n), _) => n,
                (None, Some(d)) => sched.total_within(d),
                (None, None) => 0,
            };
            interval = Duration::from_secs_f64(1.0 / rate);
            for i in 0..total {
                let at = start + sched.offset(i);
                if !wait_until(&s, at).await {
                    break;
                }
                last_start = Instant::now();
                s.started.fetch_add(1, Ordering::Relaxed);
                let item = mix.pick().clone();
                let s2 = Arc::clone(&s);
                tasks.spawn(async move { s2.one(item, at).await });
                // Reap the ended ones so the set stays small.
                while tasks.try_join_next().is_some() {}
            }
        }
        None => {
            interval = Duration::ZERO;
            let deadline = s.plan.duration.map(|d| start + d);
            let limit = s.plan.requests.unwrap_or(u64::MAX);
            let mix = Arc::new(Mutex::new(mix));
            for _ in 0..s.plan.connections {
                let s2 = Arc::clone(&s);
                let mix = Arc::clone(&mix);
                tasks.spawn(async move {
                    loop {
                        if s2.should_stop() || deadline.is_some_and(|d| Instant::now() >= d) {
                            break;
                        }
                        if s2.started.fetch_add(1, Ordering::Relaxed) >= limit {
                            s2.started.fetch_sub(1, Ordering::Relaxed);
                            break;
                        }
                        let item = mix.lock().unwrap_or_else(|e| e.into_inner()).pick().clone();
                        s2.one(item, Instant::now()).await;
                    }
                });
            }
        }
    }
    // Those in flight end within their --timeout (twice: a wait for a connection, then
    // the exchange); Ctrl-C does not cut them short.
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    if let Some(t) = ticker {
        t.abort();
        eprint!("\r\x1b[2K");
    }
    let sending = if s.plan.rate.is_some() {
        last_start.duration_since(start) + interval
    } else {
        elapsed
    };
    let stats = s.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let abort = *s.abort.lock().unwrap_or_else(|e| e.into_inner());
    let unreachable = if stats.replies() == 0 {
        abort.or_else(|| stats.errors.keys().next().copied())
    } else {
        None
    };
    Ok(Outcome {
        started: s.started.load(Ordering::Relaxed),
        stats,
        elapsed,
        sending,
        interrupted: s.stopped.load(Ordering::Relaxed) || s.plan.stop.asked(),
        unreachable,
    })
}
