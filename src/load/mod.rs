//! `csm load`: signed callbacks at a fixed arrival rate, latency percentiles corrected for
//! coordinated omission, thresholds for a CI gate.
//!
//! The pure parts ([`threshold`], [`schedule`], [`mix`], [`overrides`], [`stats`], [`report`]) are apart
//! from the engine that talks to the network ([`engine`]).

pub mod engine;
pub mod mix;
pub mod overrides;
pub mod report;
pub mod schedule;
pub mod stats;
pub mod threshold;
