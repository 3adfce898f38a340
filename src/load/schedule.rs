//! The open-loop arrival schedule: when request `i` is meant to start, with an optional
//! linear ramp from 0 to the target rate (pure).

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Requests per second once ramped up.
    pub rate: f64,
    pub ramp: Duration,
}

impl Schedule {
    /// Requests started by `t` seconds: r·t²/(2R) during the ramp, then r·(t − R/2).
    pub fn count_by(&self, t: Duration) -> f64 {
        let (t, r) = (t.as_secs_f64(), self.ramp.as_secs_f64());
        if t <= r {
            self.rate * t * t / (2.0 * r)
        } else {
            self.rate * (t - r / 2.0)
        }
    }

    /// When request `i` (from 0) is meant to start, from the start of the run.
    pub fn offset(&self, i: u64) -> Duration {
        let (i, r) = (i as f64, self.ramp.as_secs_f64());
        let in_ramp = self.rate * r / 2.0;
        let t = if i < in_ramp {
            (2.0 * r * i / self.rate).sqrt()
        } else {
            i / self.rate + r / 2.0
        };
        Duration::from_secs_f64(t)
    }

    /// How many requests start within `d`.
    pub fn total_within(&self, d: Duration) -> u64 {
        let n = self.count_by(d);
        // 500/s for 3 s is requests 0..1500, not 1501 (and not 1499 by rounding).
        (n - 1e-6).ceil().max(0.0) as u64
    }
}

/// The period a run's starts took: to when the last one was due, plus how much later than
/// `on_time` it was handed over (a client too slow for the rate stretches the period, and
/// shows as a shortfall of `rate`), plus one interval.
pub fn sending_period(
    last_due: Duration,
    late: Duration,
    on_time: Duration,
    interval: Duration,
) -> Duration {
    last_due + late.saturating_sub(on_time) + interval
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_late_within_the_pacing_is_on_time() {
        let ms = Duration::from_millis;
        assert_eq!(sending_period(ms(995), ms(2), ms(2), ms(5)), ms(1000));
        assert_eq!(sending_period(ms(995), ms(0), ms(2), ms(5)), ms(1000));
        assert_eq!(sending_period(ms(995), ms(12), ms(2), ms(5)), ms(1010));
    }

    #[test]
    fn steady_rate_spaces_requests_evenly() {
        let s = Schedule {
            rate: 500.0,
            ramp: Duration::ZERO,
        };
        assert_eq!(s.total_within(Duration::from_secs(3)), 1500);
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(500), Duration::from_secs(1));
        assert_eq!(s.offset(1), Duration::from_millis(2));
    }

    #[test]
    fn ramp_starts_slow_and_reaches_the_rate() {
        let s = Schedule {
            rate: 100.0,
            ramp: Duration::from_secs(2),
        };
        // 100 requests during the 2 s ramp, then 100/s.
        assert_eq!(s.total_within(Duration::from_secs(2)), 100);
        assert_eq!(s.total_within(Duration::from_secs(4)), 300);
        assert!((s.offset(100).as_secs_f64() - 2.0).abs() < 1e-9);
        assert!((s.offset(25).as_secs_f64() - 1.0).abs() < 1e-9);
        let gaps: Vec<f64> = (1..100)
            .map(|i| (s.offset(i) - s.offset(i - 1)).as_secs_f64())
            .collect();
        assert!(gaps.windows(2).all(|w| w[1] <= w[0] + 1e-12));
    }
}
