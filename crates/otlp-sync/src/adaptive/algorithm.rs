//! The limit algorithms: Gradient2, AIMD and Vegas, after Netflix's `concurrency-limits`.
//!
//! Each takes samples (round-trip time, requests in flight when the sampled request started, whether it was
//! dropped) and keeps an estimated limit as an `f64`. A sample may stand for several requests (`weight`): the
//! limit samples one request in `sample_every`, and a weighted update moves the estimate as far as `weight`
//! unweighted updates with the same sample would, so the speed of convergence per request does not depend on the
//! sampling.

use std::time::Duration;

/// One observation fed to an algorithm.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// Round-trip time; `None` for a drop reported on a request whose time was not taken.
    pub(crate) rtt: Option<Duration>,
    /// Permits held when the request started (itself included).
    pub(crate) inflight: usize,
    /// The request failed in a way that says the downstream is overloaded (an error, a timeout).
    pub(crate) dropped: bool,
    /// How many requests this sample stands for (at least 1).
    pub(crate) weight: u32,
}

/// Latency estimates an algorithm exposes (seconds; 0 until known).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Estimates {
    /// The last sampled round-trip time.
    pub(crate) sample: f64,
    /// The baseline the sample is compared with: the no-load time (Gradient2, Vegas), the average (AIMD).
    pub(crate) baseline: f64,
}

/// Gradient2 (after Netflix `Gradient2Limit`): compares each round-trip time with a baseline and scales the limit
/// by their ratio, plus a small queue allowance.
///
/// The limit moves to `limit * gradient + queue_size`, smoothed, with `gradient = clamp(tolerance * baseline /
/// sample, 0.5, 1)`: it settles where the requests queued at the downstream (by Little's law) equal
/// `queue_size`, just past the knee where latency starts to grow.
///
/// The baseline is the no-load round-trip time. Netflix's long-term average would follow a queue that we keep
/// standing ourselves and let the limit drift upwards; here the baseline falls at once to any lower sample and is
/// re-measured (up or down) every `probe_multiplier * limit` samples by holding the limit, for about one round
/// trip, just below the concurrency the downstream serves without a queue (as BBR's ProbeRTT does), so a
/// downstream that really got slower is followed too. It does not react
/// to drops: pick [`Aimd`] for error-driven limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gradient2 {
    /// How much slower than the baseline a sample may be before the limit shrinks (1.0 = not at all).
    pub tolerance: f64,
    /// Weight of each update in the smoothed limit (0..=1).
    pub smoothing: f64,
    /// Re-measure the baseline every `probe_multiplier * limit` samples.
    pub probe_multiplier: u32,
    /// The queue allowance added on each update; `None` = `max(1, ceil(log10(limit)))`.
    pub queue_size: Option<f64>,
}

impl Default for Gradient2 {
    fn default() -> Self {
        Gradient2 {
            tolerance: 1.0,
            smoothing: 0.2,
            probe_multiplier: 60,
            queue_size: None,
        }
    }
}

/// AIMD: additive increase while requests succeed with the limit in use (one more per round trip), multiplicative
/// decrease on a drop (an error reported with [`dropped`](crate::adaptive::AdaptivePermit::dropped)) or a round
/// trip over `timeout`, at most once per round trip (about `limit` requests), so that one overload's burst of
/// errors cuts it once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aimd {
    /// The factor applied to the limit on a drop (0 < ratio < 1).
    pub backoff_ratio: f64,
    /// A round trip longer than this counts as a drop.
    pub timeout: Duration,
}

impl Default for Aimd {
    fn default() -> Self {
        Aimd {
            backoff_ratio: 0.9,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Vegas (Netflix `VegasLimit`): estimates the queue at the downstream from the no-load round-trip time (the
/// smallest seen, probed again now and then) and keeps it between `alpha` and `beta` requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Vegas {
    /// Re-measure the no-load time every `probe_multiplier * limit` samples.
    pub probe_multiplier: u32,
    /// Weight of each update in the smoothed limit (0..=1).
    pub smoothing: f64,
}

impl Default for Vegas {
    fn default() -> Self {
        Vegas {
            probe_multiplier: 30,
            smoothing: 1.0,
        }
    }
}

/// Which algorithm drives an [`AdaptiveLimit`](crate::adaptive::AdaptiveLimit), with its parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Algorithm {
    /// Latency gradient (the default).
    Gradient2(Gradient2),
    /// Additive increase, multiplicative decrease on errors.
    Aimd(Aimd),
    /// Queue estimate from the no-load latency.
    Vegas(Vegas),
}

impl Default for Algorithm {
    fn default() -> Self {
        Algorithm::Gradient2(Gradient2::default())
    }
}

impl Algorithm {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Algorithm::Gradient2(_) => "gradient2",
            Algorithm::Aimd(_) => "aimd",
            Algorithm::Vegas(_) => "vegas",
        }
    }

    /// A description of the first bad parameter, if any.
    pub(crate) fn invalid(&self) -> Option<&'static str> {
        let unit = |x: f64| x > 0.0 && x <= 1.0;
        match self {
            Algorithm::Gradient2(g) if !(g.tolerance >= 1.0 && g.tolerance.is_finite()) => {
                Some("gradient2 tolerance must be a finite number >= 1.0")
            }
            Algorithm::Gradient2(g) if !unit(g.smoothing) => {
                Some("gradient2 smoothing must be in (0, 1]")
            }
            Algorithm::Gradient2(g) if g.probe_multiplier == 0 => {
                Some("gradient2 probe_multiplier must be at least 1")
            }
            Algorithm::Gradient2(g)
                if g.queue_size.is_some_and(|q| !(q >= 0.0 && q.is_finite())) =>
            {
                Some("gradient2 queue_size must be a finite number >= 0")
            }
            Algorithm::Aimd(a) if !(a.backoff_ratio > 0.0 && a.backoff_ratio < 1.0) => {
                Some("aimd backoff_ratio must be in (0, 1)")
            }
            Algorithm::Aimd(a) if a.timeout.is_zero() => Some("aimd timeout must be above zero"),
            Algorithm::Vegas(v) if !unit(v.smoothing) => Some("vegas smoothing must be in (0, 1]"),
            Algorithm::Vegas(v) if v.probe_multiplier == 0 => {
                Some("vegas probe_multiplier must be at least 1")
            }
            _ => None,
        }
    }
}

/// The running state of one algorithm.
#[derive(Debug)]
pub(crate) struct State {
    algorithm: Algorithm,
    /// The estimated limit, within `[min, max]`.
    limit: f64,
    min: f64,
    max: f64,
    estimates: Estimates,
    /// Gradient2's and Vegas's no-load time (seconds); AIMD's average.
    baseline: Option<f64>,
    /// Samples since the no-load time was last re-measured.
    probe_count: u64,
    /// Gradient2's baseline measurement in progress.
    probe: Option<Probe>,
}

/// Gradient2 holding its limit at `cap` to measure the no-load time.
#[derive(Debug, Clone, Copy)]
struct Probe {
    /// The limit to go back to.
    resume: f64,
    cap: f64,
    /// The smallest time among requests started under the cap.
    min_rtt: f64,
    /// Requests started under the cap seen so far (weighted), and the samples that stood for them.
    seen: u64,
    samples: u32,
}

fn log10_floor(limit: f64) -> f64 {
    limit.max(1.0).log10().floor().max(1.0)
}

impl State {
    pub(crate) fn new(algorithm: Algorithm, initial: usize, min: usize, max: usize) -> Self {
        State {
            algorithm,
            limit: initial as f64,
            min: min as f64,
            max: max as f64,
            estimates: Estimates::default(),
            baseline: None,
            // AIMD counts requests since its last cut: none yet, so the first drop cuts.
            probe_count: match algorithm {
                Algorithm::Aimd(_) => u64::MAX,
                _ => 0,
            },
            probe: None,
        }
    }

    /// The limit to enforce now.
    pub(crate) fn limit(&self) -> usize {
        self.limit.clamp(self.min, self.max) as usize
    }

    pub(crate) fn estimates(&self) -> Estimates {
        self.estimates
    }

    /// Feeds one sample; returns the new limit.
    pub(crate) fn update(&mut self, s: Sample) -> usize {
        let w = s.weight.max(1);
        match self.algorithm {
            Algorithm::Gradient2(g) => self.gradient2(g, s, w),
            Algorithm::Aimd(a) => self.aimd(a, s, w),
            Algorithm::Vegas(v) => self.vegas(v, s, w),
        }
        self.limit = self.limit.clamp(self.min, self.max);
        self.limit()
    }

    fn gradient2(&mut self, g: Gradient2, s: Sample, w: u32) {
        let Some(rtt) = s.rtt.map(|d| d.as_secs_f64()).filter(|r| *r > 0.0) else {
            return;
        };
        self.estimates.sample = rtt;
        if let Some(p) = &mut self.probe {
            if s.inflight as f64 <= p.cap {
                p.min_rtt = p.min_rtt.min(rtt);
                p.seen += u64::from(w);
                p.samples += 1;
            }
            // The requests of the first round trip under the cap may still queue behind older ones; those of the
            // second find the queue drained.
            if p.seen as f64 >= 2.0 * p.cap && p.samples >= 4 {
                self.baseline = Some(p.min_rtt);
                self.estimates.baseline = p.min_rtt;
                self.limit = p.resume;
                self.probe = None;
                self.probe_count = 0;
            }
            return;
        }
        let baseline = match self.baseline {
            Some(b) if rtt >= b => b,
            Some(_) => {
                self.baseline = Some(rtt);
                self.estimates.baseline = rtt;
                rtt
            }
            None => {
                // The first samples may already carry a queue: measure the no-load time first.
                self.start_probe(rtt, 0.0);
                return;
            }
        };
        let queue = g
            .queue_size
            .unwrap_or_else(|| self.limit.max(1.0).log10().ceil().max(1.0));
        self.probe_count += u64::from(w);
        if self.probe_count >= u64::from(g.probe_multiplier) * self.limit.max(1.0) as u64 {
            self.start_probe(rtt, queue);
            return;
        }
        // Too few requests in flight to say anything about the limit (the caller, not the downstream, is the
        // bottleneck), or more than the limit: the request started under a higher limit, already cut for the
        // queue it saw. Acting on it again would cut once per request queued, long after the cause.
        let inflight = s.inflight as f64;
        if inflight * 2.0 < self.limit || inflight > self.limit.ceil() {
            return;
        }
        let gradient = (g.tolerance * baseline / rtt).clamp(0.5, 1.0);
        let keep = 1.0 - g.smoothing * (1.0 - gradient);
        // One update `L <- (1-s)L + s(gL + q)` per round trip (about `L` requests), each sample its share
        // `w / L` of it: per request, the limit would grow by a fraction of itself and double every few round
        // trips, far past the knee before the first slow sample comes back. The updates approach the fixed point
        // `q / (1-g)` geometrically.
        let share = f64::from(w) / self.limit.max(1.0);
        if gradient < 1.0 {
            let target = queue / (1.0 - gradient);
            self.limit = target + keep.powf(share) * (self.limit - target);
        } else {
            self.limit += share * g.smoothing * queue;
        }
    }

    /// Holds the limit at `cap` until about one round trip of requests started under it: at first half the
    /// limit (the first samples may carry a queue of any size); later the concurrency the downstream serves
    /// without a queue by the current estimates (`limit * baseline / sample`), less the queue allowance, so the
    /// queue we keep standing drains while the limit stays near the knee.
    fn start_probe(&mut self, rtt: f64, queue: f64) {
        let cap = match self.baseline {
            None => self.limit / 2.0,
            Some(b) => ((self.limit * b / rtt).min(self.limit) - queue).max(self.limit / 2.0),
        };
        let cap = cap.floor().clamp(self.min, self.limit.max(self.min));
        self.probe = Some(Probe {
            resume: self.limit,
            cap,
            min_rtt: rtt,
            seen: 0,
            samples: 0,
        });
        self.limit = cap;
    }

    fn aimd(&mut self, a: Aimd, s: Sample, w: u32) {
        if let Some(rtt) = s.rtt {
            let secs = rtt.as_secs_f64();
            self.estimates.sample = secs;
            let avg = match self.baseline {
                Some(avg) => avg + 0.1 * (secs - avg),
                None => secs,
            };
            self.baseline = Some(avg);
            self.estimates.baseline = avg;
        }
        let dropped = s.dropped || s.rtt.is_some_and(|r| r > a.timeout);
        // Counts requests since the last cut: one overload shows as a burst of drops, and it is cut once per
        // round trip (about `limit` requests), as TCP does per window.
        self.probe_count = self.probe_count.saturating_add(u64::from(w));
        if dropped {
            if self.probe_count as f64 >= self.limit {
                self.limit = (self.limit * a.backoff_ratio).floor();
                self.probe_count = 0;
            }
        } else if (s.inflight as f64) * 2.0 >= self.limit {
            // One more per round trip.
            self.limit += f64::from(w) / self.limit.max(1.0);
        }
    }

    fn vegas(&mut self, v: Vegas, s: Sample, w: u32) {
        let rtt = s.rtt.map(|d| d.as_secs_f64()).filter(|r| *r > 0.0);
        if let Some(rtt) = rtt {
            self.estimates.sample = rtt;
            self.probe_count += u64::from(w);
            let interval = u64::from(v.probe_multiplier) * self.limit.max(1.0) as u64;
            if self.probe_count >= interval {
                self.probe_count = 0;
                self.baseline = Some(rtt);
                self.estimates.baseline = rtt;
                return;
            }
            match self.baseline {
                Some(noload) if rtt >= noload => {}
                _ => {
                    self.baseline = Some(rtt);
                    self.estimates.baseline = rtt;
                    return;
                }
            }
        }
        let limit = self.limit;
        let log = log10_floor(limit);
        let decrease = |l: f64| l - log10_floor(l);
        let new_limit = if s.dropped {
            decrease(limit)
        } else {
            let (Some(rtt), Some(noload)) = (rtt, self.baseline) else {
                return;
            };
            if (s.inflight as f64) * 2.0 < limit {
                return;
            }
            let queue = (limit * (1.0 - noload / rtt)).ceil();
            let (alpha, beta, threshold) = (3.0 * log, 6.0 * log, log);
            let step = if queue <= threshold {
                limit + beta
            } else if queue < alpha {
                limit + log
            } else if queue > beta {
                decrease(limit)
            } else {
                return;
            };
            // A weighted sample moves `w` steps of the same size (the sizes are whole requests).
            limit + (step - limit) * f64::from(w)
        };
        let new_limit = new_limit.clamp(self.min, self.max);
        self.limit = (1.0 - v.smoothing) * limit + v.smoothing * new_limit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64, inflight: usize) -> Sample {
        Sample {
            rtt: Some(Duration::from_millis(ms)),
            inflight,
            dropped: false,
            weight: 1,
        }
    }

    /// Feeds `n` samples of `ms` milliseconds at `inflight`, each of weight `w`.
    fn feed(s: &mut State, n: usize, ms: u64, inflight: usize, w: u32) {
        for _ in 0..n {
            s.update(Sample {
                weight: w,
                ..sample(ms, inflight)
            });
        }
    }

    #[test]
    fn gradient2_measures_the_baseline_under_half_the_limit_first() {
        let mut s = State::new(Algorithm::default(), 20, 1, 1000);
        s.update(sample(30, 20)); // the first sample starts a probe
        assert_eq!(s.limit(), 10);
        feed(&mut s, 5, 30, 20, 1); // started before the probe: not counted
        assert_eq!(s.limit(), 10);
        feed(&mut s, 10, 12, 10, 1); // the first round trip under the cap, still queued
        assert_eq!(s.limit(), 10);
        feed(&mut s, 10, 10, 10, 1);
        assert_eq!((s.limit(), s.estimates().baseline), (20, 0.010));
    }

    #[test]
    fn gradient2_weighted_update_equals_repeated_updates() {
        let mut one = State::new(Algorithm::default(), 20, 1, 1000);
        let mut many = State::new(Algorithm::default(), 20, 1, 1000);
        for s in [&mut one, &mut many] {
            s.update(sample(10, 20));
            feed(s, 10, 10, 10, 1);
        }
        feed(&mut one, 1, 20, 20, 8);
        feed(&mut many, 8, 20, 20, 1);
        assert!(
            (one.limit - many.limit).abs() < 0.01,
            "{} vs {}",
            one.limit,
            many.limit
        );
        feed(&mut one, 1, 10, 20, 8);
        feed(&mut many, 8, 10, 20, 1);
        assert!(
            (one.limit - many.limit).abs() < 0.01,
            "{} vs {}",
            one.limit,
            many.limit
        );
    }

    #[test]
    fn aimd_cuts_on_drop_and_grows_when_used() {
        let mut s = State::new(Algorithm::Aimd(Aimd::default()), 20, 1, 100);
        for _ in 0..20 {
            s.update(sample(10, 20));
        }
        assert_eq!(s.limit(), 20); // 20 + 20/20, less rounding
        let drop = Sample {
            dropped: true,
            ..sample(10, 20)
        };
        s.update(drop);
        assert_eq!(s.limit(), 18);
        // The rest of the burst does not cut again within the round trip.
        s.update(drop);
        assert_eq!(s.limit(), 18);
        // An idle caller does not raise it.
        s.update(sample(10, 2));
        assert_eq!(s.limit(), 18);
    }

    #[test]
    fn vegas_shrinks_when_the_queue_grows() {
        let mut s = State::new(Algorithm::Vegas(Vegas::default()), 50, 1, 100);
        s.update(sample(10, 50)); // no-load time
        s.update(sample(40, 50)); // three quarters of the requests are queued
        assert!(s.limit() < 50, "{}", s.limit());
    }
}
