//! A latency histogram: fixed memory, constant-time recording, under 1 %
//! relative error.
//!
//! Values are nanoseconds. Each power of two is split into 128 linear
//! sub-buckets, so a recorded value and the value a quantile reports differ
//! by less than 1/128 of it. Histograms of several load connections merge by
//! adding counts.

use std::time::Duration;

/// Linear sub-buckets per power of two (a power of two itself).
const SUB_BUCKETS: u64 = 128;
const SUB_BITS: u32 = SUB_BUCKETS.trailing_zeros();
/// Values below `SUB_BUCKETS` ns have a bucket each; then 64 − 7 octaves.
const BUCKETS: usize = (SUB_BUCKETS as usize) * (64 - SUB_BITS as usize + 1);

#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max: 0,
        }
    }
}

fn index(value: u64) -> usize {
    if value < SUB_BUCKETS {
        return value as usize;
    }
    let octave = 63 - value.leading_zeros() - SUB_BITS;
    let sub = (value >> octave) - SUB_BUCKETS;
    ((u64::from(octave) + 1) * SUB_BUCKETS + sub) as usize
}

/// The largest value that falls in bucket `index`.
fn upper_bound(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB_BUCKETS {
        return index;
    }
    let octave = index / SUB_BUCKETS - 1;
    let sub = index % SUB_BUCKETS + SUB_BUCKETS;
    let bound = (u128::from(sub + 1) << octave) - 1;
    u64::try_from(bound).unwrap_or(u64::MAX)
}

impl Histogram {
    pub fn record(&mut self, latency: Duration) {
        let value = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.counts[index(value)] += 1;
        self.total += 1;
        self.max = self.max.max(value);
    }

    /// `count` values of `latency` at once.
    pub fn record_n(&mut self, latency: Duration, count: u64) {
        if count == 0 {
            return;
        }
        let value = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.counts[index(value)] += count;
        self.total += count;
        self.max = self.max.max(value);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The latency at or below which `quantile` (0..=1) of the values fall;
    /// zero for an empty histogram.
    pub fn quantile(&self, quantile: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((quantile.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Duration::from_nanos(upper_bound(index).min(self.max));
            }
        }
        Duration::from_nanos(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_whose_bound_is_within_one_percent() {
        let mut value = 1u64;
        while value < u64::MAX / 3 {
            for probe in [value, value + 1, value * 3 / 2] {
                let bound = upper_bound(index(probe));
                assert!(bound >= probe, "{probe} above its bucket's bound {bound}");
                assert!(
                    (bound - probe) as f64 <= probe as f64 / 100.0 + 1.0,
                    "{probe} -> {bound}"
                );
            }
            value = value * 2 + 1;
        }
    }

    #[test]
    fn quantiles_follow_the_recorded_values() {
        let mut histogram = Histogram::default();
        for micros in 1..=1000 {
            histogram.record(Duration::from_micros(micros));
        }
        let near = |got: Duration, micros: u64| {
            let want = Duration::from_micros(micros).as_nanos() as f64;
            (got.as_nanos() as f64 - want).abs() <= want / 100.0
        };
        assert!(near(histogram.quantile(0.5), 500));
        assert!(near(histogram.quantile(0.99), 990));
        assert!(near(histogram.quantile(0.999), 999));
        assert_eq!(histogram.quantile(1.0), Duration::from_micros(1000));
        assert_eq!(histogram.count(), 1000);
    }

    #[test]
    fn merged_histograms_count_both() {
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        a.record(Duration::from_millis(1));
        b.record(Duration::from_millis(3));
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert!(a.quantile(1.0) >= Duration::from_millis(3));
        assert_eq!(Histogram::default().quantile(0.99), Duration::ZERO);
    }
}
