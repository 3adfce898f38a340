//! The load engine: an open-loop scheduler (or closed-loop workers for `--rate max`) over the
//! policy's keep-alive client ([`crate::net::pool`]) with at most `--connections` requests in
//! flight, every request freshly generated and signed, every reply judged.

use super::mix::{Item, Mix};
use super::overrides::Overrides;
use super::schedule::Schedule;
use super::stats::{self, interval_line, ms_at, Ended, Stats};
use crate::catalog::gen::{self, Ctx};
use crate::catalog::Protocol;
use crate::endpoint::client::Exchange;
use crate::endpoint::judge::{self, Status};
use crate::endpoint::request::{self, Keys, PrepOpts, Prepared, Tamper};
use crate::interrupt::Interrupt;
use crate::net::pool::Pool;
use crate::net::raw::Reply;
use crate::net::{NetFailure, NetKind, Settings};
use reqwest::Url;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// What each request is.
#[derive(Debug, Clone)]
pub enum Work {
    /// `--activity` or the dial-test mix.
    Mix(Mix),
    /// `--scenario lifecycle`: each virtual order runs these steps in order on its own
    /// instance, the next step once the previous one succeeded.
    Lifecycle(Vec<Item>),
}

/// How much to send, how fast.
#[derive(Debug, Clone)]
pub struct Plan {
    pub endpoint: Url,
    pub protocol: Protocol,
    pub keys: Keys,
    pub work: Work,
    /// `--set` / `--body` values.
    pub overrides: Overrides,
    /// None: `--rate max` (closed loop).
    pub rate: Option<f64>,
    pub ramp: Duration,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    pub connections: usize,
    /// The client policy; its timeout is the per-request budget.
    pub net: Settings,
    pub kit_path_full: bool,
    pub license_inner: crate::protocol::v2::LicenseInner,
    pub stop: Interrupt,
    /// Print a progress line to stderr every second.
    pub progress: bool,
    /// Keep a latency histogram per second (`--hdr-out`).
    pub intervals: bool,
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
    /// No reply at all, and the first failure left no doubt (refused, DNS, TLS, ...).
    pub unreachable: Option<NetFailure>,
    /// The first request that could not be built (the rest are counted as `prepare`).
    pub prepare_error: Option<String>,
    /// `--scenario lifecycle`: virtual orders started and run to their release.
    pub orders: Option<(u64, u64)>,
    /// Kept-alive connections found closed by the endpoint (replaced as needed).
    pub reconnects: u64,
    /// When the run started, and its interval log lines (with `intervals`).
    pub started_at: std::time::SystemTime,
    pub intervals: Vec<String>,
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

/// One request to send: a mix item, or step `step` of a virtual order on `instance`.
#[derive(Debug, Clone)]
enum Task {
    Mix(Item),
    Step {
        step: usize,
        instance: Option<String>,
    },
}

/// Why a request got no reply.
enum NoReply {
    Net(NetFailure),
    /// No free connection within the budget.
    Queued,
    /// Not sent: the run was stopping (Ctrl-C, SIGTERM, an abort) when a connection came
    /// free, or when the wait for one ended. Not a result of the endpoint: not counted.
    Stopped,
}

impl NoReply {
    fn kind(&self) -> &'static str {
        match self {
            NoReply::Net(f) => f.kind.id(),
            NoReply::Queued => stats::QUEUED,
            NoReply::Stopped => "stopped",
        }
    }
}

struct Shared {
    plan: Plan,
    pool: Pool,
    slots: Arc<Semaphore>,
    stats: Mutex<Stats>,
    instances: Mutex<Instances>,
    /// Lifecycle orders whose next step is due (their previous step succeeded).
    ready: Mutex<VecDeque<(usize, String)>>,
    orders_started: AtomicU64,
    orders_done: AtomicU64,
    started: AtomicU64,
    /// Requests started and not ended: on the wire, or waiting for a free connection.
    pending: AtomicU64,
    /// Requests on the wire (at most `--connections`).
    on_wire: AtomicU64,
    /// The first transport failure, kept for the unreachable verdict.
    first_failure: Mutex<Option<NetFailure>>,
    /// Set once the endpoint is known unreachable: no further request is started.
    abort: std::sync::atomic::AtomicBool,
    prepare_error: Mutex<Option<String>>,
    intervals: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn steps(&self) -> &[Item] {
        match &self.plan.work {
            Work::Lifecycle(steps) => steps,
            Work::Mix(_) => &[],
        }
    }

    /// The item a task sends and the instance id it works on (borrowed from the pool for a
    /// mix item). A mix call on an instance before any exists is sent as a newInstance.
    fn resolve(&self, task: Task) -> (Item, Option<String>, bool) {
        match task {
            Task::Step { step, instance } => (self.steps()[step].clone(), instance, false),
            Task::Mix(item) => {
                if !item.needs_instance() {
                    return (item, None, false);
                }
                let borrowed = lock(&self.instances).checkout(item.releases());
                match borrowed {
                    Some(id) => (item, Some(id), true),
                    None => {
                        let new = crate::catalog::find("newInstance", self.plan.protocol)
                            .map(|callback| Item {
                                callback,
                                scene: None,
                                weight: 1,
                            })
                            .unwrap_or(item);
                        (new, None, false)
                    }
                }
            }
        }
    }

    /// A fresh, signed request for `item` on `instance` (a new id when None).
    fn prepare(&self, item: &Item, instance: Option<&str>) -> Result<Prepared, String> {
        let p = &self.plan;
        let (cb, scene) = (item.callback, item.scene);
        let key = p
            .keys
            .for_family(cb.family)
            .ok_or_else(|| format!("{}: no key for this callback", cb.name))?;
        let ctx = Ctx {
            now: Some(p.clock.now()),
            test_flag: true,
            instance_id: Some(
                instance
                    .map(str::to_string)
                    .unwrap_or_else(|| p.entropy.uuid()),
            ),
            v1_key: p.keys.basic.clone(),
            entropy: Arc::clone(&p.entropy),
            ..Ctx::default()
        };
        // `generate` settles the shared values on its own copy.
        let mut fields = gen::generate(cb, scene, &ctx);
        p.overrides
            .apply(cb, &mut fields)
            .map_err(|e| format!("{}: {e}", cb.name))?;
        let opts = PrepOpts {
            endpoint: &p.endpoint,
            now_ms: p.clock.now_ms(),
            nonce: p.entropy.nonce_hex64(),
            tamper: Tamper::None,
            kit_path_full: p.kit_path_full,
            license_inner: p.license_inner,
        };
        request::prepare(cb, scene, fields, key, &opts).map_err(|e| e.0)
    }

    /// Sends `p` on a free connection; the service time counts from when one was free.
    async fn send(&self, p: &Prepared) -> (Result<Reply, NoReply>, Duration) {
        // Waiting for a free connection counts toward the latency, not the service time; a
        // request that finds none within the budget is not sent.
        let timeout = self.plan.net.timeout;
        let permit = tokio::time::timeout(timeout, self.slots.acquire()).await;
        // After a stop only the exchanges already on the wire are awaited: a stop is answered
        // within one budget, inside the grace a CI runner gives between its signals.
        if self.should_stop() {
            return (Err(NoReply::Stopped), Duration::ZERO);
        }
        let Ok(Ok(_permit)) = permit else {
            return (Err(NoReply::Queued), Duration::ZERO);
        };
        let sent = Instant::now();
        self.on_wire.fetch_add(1, Ordering::Relaxed);
        let r = tokio::time::timeout(
            timeout,
            self.pool.exchange(p.method, &p.url, &p.headers, &p.body),
        )
        .await;
        self.on_wire.fetch_sub(1, Ordering::Relaxed);
        let service = sent.elapsed();
        let r = match r {
            Ok(r) => r.map_err(NoReply::Net),
            Err(_) => Err(NoReply::Net(NetFailure::new(
                NetKind::Timeout,
                format!("no answer within {} ms", timeout.as_millis()),
            ))),
        };
        (r, service)
    }

    /// Sends one request meant to start at `intended` and records how it ended; for a
    /// lifecycle step, queues the order's next step (or, closed loop, returns it).
    async fn one(&self, task: Task, intended: Instant) -> Option<(usize, String)> {
        self.pending.fetch_add(1, Ordering::Relaxed);
        let step = match &task {
            Task::Step { step, .. } => Some(*step),
            Task::Mix(_) => None,
        };
        let (item, instance, borrowed) = self.resolve(task);
        let mut next = None;
        let mut stopped = false;
        let (activity, outcome, service, rejected) = match self.prepare(&item, instance.as_deref())
        {
            Err(e) => {
                lock(&self.prepare_error).get_or_insert(e);
                (
                    item.title(),
                    Err(stats::PREPARE),
                    Duration::ZERO,
                    Vec::new(),
                )
            }
            Ok(p) => {
                let activity = p.title();
                let (r, service) = self.send(&p).await;
                let (outcome, rejected) = match r {
                    Err(no) => {
                        stopped = matches!(no, NoReply::Stopped);
                        let kind = no.kind();
                        if let NoReply::Net(f) = no {
                            self.failed(f);
                        }
                        // Counted under `errors`: the judge has no reply to reject.
                        (Err(kind), Vec::new())
                    }
                    Ok(reply) => {
                        let json = reply.json();
                        let code = json.and_then(|v| {
                            v.get("resultCode")
                                .and_then(Value::as_str)
                                .map(str::to_string)
                        });
                        let created = (p.callback.name == "newInstance"
                            && code.as_deref() == Some(stats::OK))
                        .then(|| {
                            json.and_then(|v| v.get("instanceId"))
                                .and_then(Value::as_str)
                                .map(str::to_string)
                        })
                        .flatten();
                        let status = reply.status;
                        let rejected = self.judge(p, reply, service);
                        // One rule for "failed" here (an order stops) and in the stats.
                        let ok = stats::succeeded(status, code.as_deref(), &rejected);
                        if let Some(k) = step {
                            let id = created.clone().or_else(|| instance.clone());
                            if ok && k + 1 < self.steps().len() {
                                next = id.map(|id| (k + 1, id));
                            } else if ok {
                                self.orders_done.fetch_add(1, Ordering::Relaxed);
                            }
                        } else if let Some(id) = created {
                            lock(&self.instances).add(id);
                        }
                        (Ok((status, code)), rejected)
                    }
                };
                (activity, outcome, service, rejected)
            }
        };
        if borrowed {
            if let Some(id) = &instance {
                lock(&self.instances).give_back(id);
            }
        }
        let latency = intended.elapsed();
        if stopped {
            // Never sent, nor due to be (the run was stopping): not a start of this run, nor,
            // for an order's first step, an order started.
            self.started.fetch_sub(1, Ordering::Relaxed);
            if step == Some(0) {
                self.orders_started.fetch_sub(1, Ordering::Relaxed);
            }
        } else {
            lock(&self.stats).add(Ended {
                activity,
                latency,
                service,
                outcome,
                rejected: &rejected,
            });
        }
        self.pending.fetch_sub(1, Ordering::Relaxed);
        next
    }

    /// Keeps the first transport failure; with no reply yet, one that leaves no doubt
    /// (nothing listening, no TLS) stops the run.
    fn failed(&self, f: NetFailure) {
        let decisive = matches!(f.kind, NetKind::Connect | NetKind::Tls);
        if decisive && lock(&self.stats).replies() == 0 {
            self.abort.store(true, Ordering::Relaxed);
        }
        lock(&self.first_failure).get_or_insert(f);
    }

    /// The judge's rules that fail for this reply (result code 000000 expected).
    fn judge(&self, request: Prepared, reply: Reply, service: Duration) -> Vec<&'static str> {
        let Some(key) = self.plan.keys.for_family(request.callback.family) else {
            return Vec::new();
        };
        let ex = Exchange {
            request,
            outcome: Ok(reply),
            latency: service,
        };
        let mut out: Vec<&'static str> =
            judge::judge_one_call(&ex, key.expose(), self.plan.net.timeout, stats::OK, false)
                .into_iter()
                .filter(|r| r.status == Status::Fail)
                .map(|r| r.family.id())
                .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    fn should_stop(&self) -> bool {
        self.plan.stop.asked() || self.abort.load(Ordering::Relaxed)
    }

    /// The next task of an open-loop run: a due lifecycle step, else a new order (or the
    /// mix's next item).
    fn next_task(&self, mix: &mut Option<Mix>) -> Task {
        match mix {
            Some(m) => Task::Mix(m.pick().clone()),
            None => match lock(&self.ready).pop_front() {
                Some((step, id)) => Task::Step {
                    step,
                    instance: Some(id),
                },
                None => {
                    self.orders_started.fetch_add(1, Ordering::Relaxed);
                    Task::Step {
                        step: 0,
                        instance: None,
                    }
                }
            },
        }
    }
}

/// The pacing thread's shortest sleep: starts are at most this late (plus the OS's timer
/// slack), and a high rate wakes the runtime at most this often.
const PACE: Duration = Duration::from_millis(1);

/// A start handed over this late is on time: the pacing's resolution and the OS's timer
/// slack.
const ON_TIME: Duration = Duration::from_millis(2);

/// Hands over, as their intended starts come, how many requests are due, from an OS thread
/// that sleeps until then. The runtime's timers tick each millisecond and fire up to 2 ms
/// late, and every late start would count against the endpoint (latency runs from the
/// intended start); a thread's sleep is late by tens of microseconds. One message carries
/// every start that came while the thread slept, so a high rate wakes the runtime no more
/// often than the thread wakes. The thread stops after the last request, on Ctrl-C or an
/// abort (it looks every 50 ms), or when no one listens.
fn pace(
    stop: impl Fn() -> bool + Send + 'static,
    sched: Schedule,
    start: Instant,
    total: u64,
) -> tokio::sync::mpsc::UnboundedReceiver<u64> {
    let (due, rx) = tokio::sync::mpsc::unbounded_channel();
    let start = start.into_std();
    std::thread::spawn(move || {
        let mut next = 0;
        while next < total && !stop() {
            let now = std::time::Instant::now();
            let at = start + sched.offset(next);
            if at > now {
                std::thread::sleep((at - now).clamp(PACE, Duration::from_millis(50)));
                continue;
            }
            while next < total && start + sched.offset(next) <= now {
                next += 1;
            }
            if due.send(next).is_err() {
                return;
            }
        }
    });
    rx
}

async fn progress(s: Arc<Shared>, start: Instant) {
    // Ten looks a second for a Ctrl-C, so that it is answered at once; a line a second.
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut told = false;
    tick.tick().await;
    for n in 1u64.. {
        tick.tick().await;
        if !told && s.plan.stop.asked() {
            told = true;
            eprintln!(
                "\r\x1b[2Kcsm: stopping: no new requests; those on the wire end within {} at most (Ctrl-C again quits at once, without a report)",
                crate::duration::show(s.plan.net.timeout)
            );
        }
        if n % 10 != 0 {
            continue;
        }
        let (done, p99, failed) = {
            let st = lock(&s.stats);
            (st.requests, ms_at(&st.latency, 99.0), st.failed)
        };
        let secs = start.elapsed().as_secs_f64();
        let on_wire = s.on_wire.load(Ordering::Relaxed);
        let waiting = s.pending.load(Ordering::Relaxed).saturating_sub(on_wire);
        eprint!(
            "\r\x1b[2K{secs:>5.0}s  {:>8.1}/s  in flight {on_wire:>5}  waiting {waiting:>5}  p99 {:>9.1} ms  failed {failed}",
            done as f64 / secs.max(0.001),
            p99
        );
    }
}

/// Closes an interval of the latency histogram each second (`--hdr-out`).
async fn intervals(s: Arc<Shared>, start: Instant) {
    let mut k = 0u64;
    loop {
        k += 1;
        tokio::time::sleep_until(start + Duration::from_secs(k)).await;
        let h = lock(&s.stats).take_interval();
        let line = interval_line(&h, Duration::from_secs(k - 1), Duration::from_secs(1));
        lock(&s.intervals).push(line);
    }
}

/// Runs the plan to its end (or Ctrl-C, or an unreachable endpoint).
pub fn run(plan: Plan) -> Result<Outcome, String> {
    let mut b = crate::server::runtime_builder();
    let rt = b
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(run_async(plan))
}

async fn run_async(plan: Plan) -> Result<Outcome, String> {
    let pool = plan.net.pool(&plan.endpoint, plan.connections)?;
    let s = Arc::new(Shared {
        slots: Arc::new(Semaphore::new(plan.connections)),
        pool,
        stats: Mutex::new(Stats::default()),
        instances: Mutex::new(Instances::default()),
        ready: Mutex::new(VecDeque::new()),
        orders_started: AtomicU64::new(0),
        orders_done: AtomicU64::new(0),
        started: AtomicU64::new(0),
        pending: AtomicU64::new(0),
        on_wire: AtomicU64::new(0),
        first_failure: Mutex::new(None),
        abort: std::sync::atomic::AtomicBool::new(false),
        prepare_error: Mutex::new(None),
        intervals: Mutex::new(Vec::new()),
        plan,
    });
    let start = Instant::now();
    let started_at = std::time::SystemTime::now();
    let ticker = s
        .plan
        .progress
        .then(|| tokio::spawn(progress(Arc::clone(&s), start)));
    let interval_ticker = s
        .plan
        .intervals
        .then(|| tokio::spawn(intervals(Arc::clone(&s), start)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut last_start = start;
    // When the last start handed over was due (with `--rate N`).
    let mut last_due = start;
    let interval;
    match s.plan.rate {
        Some(rate) => {
            let sched = Schedule {
                rate,
                ramp: s.plan.ramp,
            };
            // With both, whichever ends first.
            let total = match (s.plan.requests, s.plan.duration) {
                (Some(n), Some(d)) => n.min(sched.total_within(d)),
                (Some(n), None) => n,
                (None, Some(d)) => sched.total_within(d),
                (None, None) => 0,
            };
            interval = Duration::from_secs_f64(1.0 / rate);
            let mut mix = match &s.plan.work {
                Work::Mix(m) => Some(m.clone()),
                Work::Lifecycle(_) => None,
            };
            let s2 = Arc::clone(&s);
            let mut due = pace(move || s2.should_stop(), sched, start, total);
            let mut sent = 0;
            while let Some(upto) = due.recv().await {
                // Starts already handed over are not sent after Ctrl-C or an abort.
                if s.should_stop() {
                    break;
                }
                last_start = Instant::now();
                last_due = start + sched.offset(upto.saturating_sub(1));
                for i in std::mem::replace(&mut sent, upto)..upto {
                    let at = start + sched.offset(i);
                    s.started.fetch_add(1, Ordering::Relaxed);
                    let task = s.next_task(&mut mix);
                    let s2 = Arc::clone(&s);
                    tasks.spawn(async move {
                        if let Some(next) = s2.one(task, at).await {
                            lock(&s2.ready).push_back(next);
                        }
                    });
                }
                // Reap the ended ones so the set stays small.
                while tasks.try_join_next().is_some() {}
            }
        }
        None => {
            interval = Duration::ZERO;
            let deadline = s.plan.duration.map(|d| start + d);
            let limit = s.plan.requests.unwrap_or(u64::MAX);
            let mix = match &s.plan.work {
                Work::Mix(m) => Some(Arc::new(Mutex::new(m.clone()))),
                Work::Lifecycle(_) => None,
            };
            for _ in 0..s.plan.connections {
                let s2 = Arc::clone(&s);
                let mix = mix.clone();
                tasks.spawn(async move {
                    // A worker runs its orders one after the other, step by step.
                    let mut next: Option<(usize, String)> = None;
                    loop {
                        if s2.should_stop() || deadline.is_some_and(|d| Instant::now() >= d) {
                            break;
                        }
                        if s2.started.fetch_add(1, Ordering::Relaxed) >= limit {
                            s2.started.fetch_sub(1, Ordering::Relaxed);
                            break;
                        }
                        let task = match (&mix, next.take()) {
                            (Some(m), _) => Task::Mix(lock(m).pick().clone()),
                            (None, Some((step, id))) => Task::Step {
                                step,
                                instance: Some(id),
                            },
                            (None, None) => {
                                s2.orders_started.fetch_add(1, Ordering::Relaxed);
                                Task::Step {
                                    step: 0,
                                    instance: None,
                                }
                            }
                        };
                        next = s2.one(task, Instant::now()).await;
                    }
                });
            }
        }
    }
    // Those on the wire end within their budget, and those waiting for a connection within
    // theirs, unsent (see `send`); Ctrl-C does not cut an exchange short.
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    if let Some(t) = ticker {
        t.abort();
        eprint!("\r\x1b[2K");
    }
    if let Some(t) = interval_ticker {
        t.abort();
        // The last, partial interval.
        let at = lock(&s.intervals).len() as u64;
        let h = lock(&s.stats).take_interval();
        let from = Duration::from_secs(at);
        let line = interval_line(&h, from, elapsed.saturating_sub(from));
        lock(&s.intervals).push(line);
    }
    let sending = if s.plan.rate.is_some() {
        super::schedule::sending_period(
            last_due.duration_since(start),
            last_start.saturating_duration_since(last_due),
            ON_TIME,
            interval,
        )
    } else {
        elapsed
    };
    let stats = lock(&s.stats).clone();
    let unreachable = if stats.replies() == 0 {
        lock(&s.first_failure)
            .take()
            .filter(|f| f.kind.is_unreachable())
    } else {
        None
    };
    let prepare_error = lock(&s.prepare_error).take();
    let intervals = std::mem::take(&mut *lock(&s.intervals));
    let orders = matches!(s.plan.work, Work::Lifecycle(_)).then(|| {
        (
            s.orders_started.load(Ordering::Relaxed),
            s.orders_done.load(Ordering::Relaxed),
        )
    });
    Ok(Outcome {
        started: s.started.load(Ordering::Relaxed),
        stats,
        elapsed,
        sending,
        interrupted: s.plan.stop.asked(),
        unreachable,
        prepare_error,
        orders,
        reconnects: s.pool.reconnects(),
        started_at,
        intervals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every start is handed over, in order, never before its time; a stop ends the pacing.
    #[tokio::test]
    async fn pacing_hands_over_each_start_once_and_never_early() {
        let sched = Schedule {
            rate: 2000.0,
            ramp: Duration::from_millis(20),
        };
        let start = Instant::now();
        let mut due = pace(|| false, sched, start, 120);
        let mut last = 0;
        while let Some(upto) = due.recv().await {
            assert!(upto > last, "{upto} after {last}");
            assert!(
                Instant::now() >= start + sched.offset(upto - 1),
                "request {} early",
                upto - 1
            );
            last = upto;
        }
        assert_eq!(last, 120);
        let stopped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stopped);
        let slow = Schedule {
            rate: 10.0,
            ramp: Duration::ZERO,
        };
        let mut due = pace(
            move || flag.load(Ordering::Relaxed),
            slow,
            Instant::now(),
            1000,
        );
        assert_eq!(due.recv().await, Some(1));
        stopped.store(true, Ordering::Relaxed);
        // The thread looks every 50 ms: the channel closes long before the thousand requests.
        let closed = tokio::time::timeout(Duration::from_secs(2), async {
            while due.recv().await.is_some() {}
        })
        .await;
        assert!(closed.is_ok(), "pacing went on after the stop");
    }
}
