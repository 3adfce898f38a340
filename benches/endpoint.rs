//! test-endpoint speed: one csm callback (generate, sign, send, judge) against a raw HTTP
//! round trip of the same bytes to the same loopback server, and a full `--demo` run, all
//! measured in the same run. `cargo bench --bench endpoint` prints criterion's figures and
//! then a ratio summary.

mod common;

use common::{median, prepared, us, KEY};
use criterion::{black_box, Criterion};
use csm::commands::test_endpoint::demo_targets;
use csm::endpoint::client::Client;
use csm::endpoint::judge::{self, JudgeCtx};
use csm::endpoint::request::Prepared;
use csm::endpoint::suites::{self, Suite};
use csm::server::{self, Handler, Request, Response};
use reqwest::Url;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Answers every request with the same small signed JSON, so that both sides of the
/// comparison cost the server the same.
struct Fixed;

impl Handler for Fixed {
    fn handle(&self, _req: Request) -> Response {
        let body = br#"{"resultCode":"000000","resultMsg":"success.","info":[{"instanceId":"i-1","appInfo":{"frontEndUrl":"https://saas.example.com/i-1"}}]}"#;
        let sig = csm::protocol::v1::body_sign(KEY, body);
        Response::json(200, body.to_vec()).with_header(
            "Body-Sign",
            &csm::protocol::v1::body_sign_header_value(&sig),
        )
    }
}

/// The same request as raw bytes over a fresh connection: the floor for one callback.
fn raw_bytes(p: &Prepared, addr: SocketAddr) -> Vec<u8> {
    let url = Url::parse(&p.url).unwrap();
    let mut head = format!(
        "POST {}?{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n",
        url.path(),
        url.query().unwrap_or("")
    );
    for (n, v) in &p.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", p.body.len()));
    let mut out = head.into_bytes();
    out.extend_from_slice(&p.body);
    out
}

fn raw_roundtrip(addr: SocketAddr, bytes: &[u8]) -> usize {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(bytes).unwrap();
    let mut reply = Vec::with_capacity(512);
    s.read_to_end(&mut reply).unwrap();
    reply.len()
}

fn csm_callback(url: &Url, client: &mut Client) -> usize {
    let p = prepared("queryInstance", url);
    let ex = client.send(&p);
    let cx = JudgeCtx {
        v1: false,
        key: KEY,
        budget: Duration::from_secs(5),
        require_body_sign: false,
    };
    judge::judge_format(&ex, &cx).len()
}

fn demo_run() -> usize {
    let (targets, servers) = demo_targets(
        &csm::interrupt::Interrupt::never(),
        Duration::from_secs(5),
        &[],
        500,
    )
    .unwrap();
    let mut calls = 0;
    for t in &targets {
        let out = suites::run(t, &Suite::ALL);
        assert!(out.rows.iter().all(|r| r.status != judge::Status::Fail));
        calls += out.calls;
    }
    for s in servers {
        s.shutdown();
    }
    calls
}

fn main() {
    let handle = server::serve("127.0.0.1:0", Arc::new(Fixed), server::Config::default()).unwrap();
    let addr = handle.addr;
    let url = Url::parse(&format!("http://{addr}/produce")).unwrap();
    let bytes = raw_bytes(&prepared("queryInstance", &url), addr);
    let mut client = Client::new(Duration::from_secs(5));

    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    {
        let mut g = c.benchmark_group("callback");
        g.bench_function("raw_http_roundtrip", |b| {
            b.iter(|| raw_roundtrip(addr, black_box(&bytes)))
        });
        g.bench_function("csm_generate_sign_send_judge", |b| {
            b.iter(|| csm_callback(&url, &mut client))
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("demo");
        g.sample_size(10);
        g.bench_function("full_demo_all_suites", |b| b.iter(demo_run));
        g.finish();
    }
    c.final_summary();

    // The ratio summary, measured here in the same process and the same run.
    let n = 400;
    let raw: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            black_box(raw_roundtrip(addr, &bytes));
            t.elapsed()
        })
        .collect();
    let ours: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            black_box(csm_callback(&url, &mut client));
            t.elapsed()
        })
        .collect();
    let mut demo_calls = 0;
    let demo: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            demo_calls = demo_run();
            t.elapsed()
        })
        .collect();
    let (raw, ours, demo) = (median(raw), median(ours), median(demo));
    let per_demo_call = demo / demo_calls as u32;
    println!("\nendpoint summary (medians, same run)");
    println!(
        "  raw HTTP round trip            : {:>9.1} us (baseline 1.00x)",
        us(raw)
    );
    println!(
        "  csm callback (gen+sign+send+judge): {:>6.1} us ({:.2}x, overhead {:.1} us)",
        us(ours),
        us(ours) / us(raw),
        us(ours) - us(raw)
    );
    println!(
        "  full --demo run ({demo_calls} calls, 2 merchants): {:.1} ms; {:.1} us per call ({:.2}x raw)",
        demo.as_secs_f64() * 1e3,
        us(per_demo_call),
        us(per_demo_call) / us(raw)
    );
    handle.shutdown();
}
