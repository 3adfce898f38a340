//! What the benches share: the key, and a callback prepared as csm sends one.

use csm::catalog::gen::{self, Ctx};
use csm::catalog::{self, Protocol};
use csm::endpoint::request::{self, PrepOpts, Prepared, Tamper};
use csm::protocol::v2::LicenseInner;
use csm::secret::Secret;
use reqwest::Url;
use std::time::Duration;

pub const KEY: &str = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";

/// The V2 callback `name` to `url`, signed with [`KEY`]: fresh ids, nonce and timestamp
/// each time, as `csm load` and test-endpoint make one.
pub fn prepared(name: &str, url: &Url) -> Prepared {
    let cb = catalog::find(name, Protocol::V2).unwrap();
    let ctx = Ctx {
        test_flag: true,
        ..Ctx::default()
    };
    let fields = gen::generate(cb, None, &ctx);
    request::prepare(
        cb,
        None,
        fields,
        &Secret::new(KEY),
        &PrepOpts {
            endpoint: url,
            now_ms: csm::clock::now_ms(),
            nonce: csm::clock::nonce_hex64(),
            tamper: Tamper::None,
            kit_path_full: false,
            license_inner: LicenseInner::KeyedHmac,
        },
    )
    .unwrap()
}

/// The middle of the rounds' times.
pub fn median(mut rounds: Vec<Duration>) -> Duration {
    rounds.sort();
    rounds[rounds.len() / 2]
}

/// A time in microseconds, for the summary lines.
pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
