//! The results of a run, as the Markdown of `BENCHMARKS.md`.

use std::fmt::Write as _;
use std::time::Duration;

use crate::load::Outcome;

/// One line of the results table.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub scenario: String,
    pub rate: Option<f64>,
    /// `rate` over the baseline's rate for the same requests.
    pub ratio: Option<f64>,
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    pub p999: Option<Duration>,
    pub memory: Option<String>,
    pub note: String,
}

impl Row {
    /// A row of the figures of one load run.
    pub fn measured(
        scenario: impl Into<String>,
        outcome: &Outcome,
        baseline: Option<&Outcome>,
    ) -> Row {
        Row {
            scenario: scenario.into(),
            rate: Some(outcome.rate()),
            ratio: baseline.map(|b| outcome.rate() / b.rate().max(1e-9)),
            p50: Some(outcome.latency.quantile(0.5)),
            p99: Some(outcome.latency.quantile(0.99)),
            p999: Some(outcome.latency.quantile(0.999)),
            ..Row::default()
        }
    }

    pub fn memory(mut self, memory: impl Into<String>) -> Row {
        self.memory = Some(memory.into());
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }
}

/// A target of the issue and whether this run met it.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub target: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    /// Why the run stopped early: the rows above are those of the
    /// scenarios that completed, and the table ends with a "failed" row.
    pub failed: Option<String>,
    pub verdicts: Vec<Verdict>,
    /// Where a target was missed: what the profile shows.
    pub findings: Vec<String>,
    pub machine: String,
    pub command: String,
    pub setup: Vec<String>,
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// CPU, cores, memory and kernel of this machine.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or_else(
            || "unknown memory".into(),
            |kb| format!("{:.0} GiB", kb / 1024.0 / 1024.0),
        );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown kernel".into(), |k| k.trim().to_string());
    format!("{} × {}, {memory}, Linux {kernel}", cores, cpu_model())
}

pub fn millis(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

/// A rate with thousands separated by a thin space: `123 456/s`.
pub fn per_second(rate: f64) -> String {
    let whole = rate.round() as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (n, digit) in digits.chars().enumerate() {
        if n > 0 && (digits.len() - n).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(digit);
    }
    out + "/s"
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Benchmarks\n");
        let _ = writeln!(
            out,
            "Written by the benchmark command; do not edit by hand. Every figure is from one run on one machine: \
             rates are requests per second over loopback, ratios are to the baseline server measured in the same run \
             with the same requests and connections, latencies run from sending a request until its whole answer \
             arrived (at a fixed rate, from when it was due if a late answer held it up). \
             Absolute figures move with the machine's other load between runs; the ratios, \
             taken within one run, move much less.\n"
        );
        let _ = writeln!(out, "- Machine: {}", self.machine);
        let _ = writeln!(out, "- Command: `{}`", self.command);
        for line in &self.setup {
            let _ = writeln!(out, "- {line}");
        }
        let _ = writeln!(out, "\n## Results\n");
        let _ = writeln!(
            out,
            "| scenario | req/s | ratio to baseline | p50 | p99 | p99.9 | memory | notes |"
        );
        let _ = writeln!(
            out,
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
        );
        let dash = || "–".to_string();
        for row in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                row.scenario,
                row.rate.map_or_else(dash, per_second),
                row.ratio.map_or_else(dash, |r| format!("{r:.2}×")),
                row.p50.map_or_else(dash, millis),
                row.p99.map_or_else(dash, millis),
                row.p999.map_or_else(dash, millis),
                row.memory.clone().unwrap_or_else(dash),
                row.note
            );
        }
        if let Some(reason) = &self.failed {
            let reason = reason.replace('|', "\\|").replace('\n', " ");
            let _ = writeln!(
                out,
                "| **failed**: {reason} | – | – | – | – | – | – | the scenarios after this did not run |"
            );
        }
        if !self.verdicts.is_empty() {
            let _ = writeln!(out, "\n## Targets\n");
            let _ = writeln!(out, "| target | measured | met |");
            let _ = writeln!(out, "| --- | --- | --- |");
            for verdict in &self.verdicts {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} |",
                    verdict.target,
                    verdict.measured,
                    if verdict.met { "yes" } else { "**no**" }
                );
            }
        }
        if !self.findings.is_empty() {
            let _ = writeln!(out, "\n## Where targets are missed\n");
            for finding in &self.findings {
                let _ = writeln!(out, "- {finding}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_print_readably() {
        assert_eq!(per_second(1234567.4), "1 234 567/s");
        assert_eq!(per_second(999.0), "999/s");
        assert_eq!(millis(Duration::from_micros(1234)), "1.23 ms");
        assert_eq!(millis(Duration::from_millis(25)), "25.0 ms");
        assert_eq!(millis(Duration::from_millis(2500)), "2.50 s");
    }

    #[test]
    fn the_table_has_a_line_per_row_and_says_which_targets_failed() {
        let report = Report {
            rows: vec![Row {
                scenario: "get".into(),
                rate: Some(1000.0),
                ratio: Some(0.5),
                ..Row::default()
            }],
            verdicts: vec![Verdict {
                target: "get ≥ 0.6× baseline".into(),
                measured: "0.50×".into(),
                met: false,
            }],
            machine: "test".into(),
            command: "presenced-bench all".into(),
            ..Report::default()
        };
        let text = report.markdown();
        assert!(text.contains("| get | 1 000/s | 0.50× | – |"), "{text}");
        assert!(
            text.contains("| get ≥ 0.6× baseline | 0.50× | **no** |"),
            "{text}"
        );
        assert!(text.contains("Command: `presenced-bench all`"), "{text}");
        assert!(!text.contains("failed"), "{text}");
    }

    #[test]
    fn a_failed_run_keeps_the_rows_before_the_failure_and_says_why() {
        let report = Report {
            rows: vec![Row {
                scenario: "redis: get".into(),
                rate: Some(1000.0),
                ..Row::default()
            }],
            failed: Some("redis bulk: 3 of 9 requests failed | 503\nmore".into()),
            ..Report::default()
        };
        let text = report.markdown();
        let get = text.find("| redis: get | 1 000/s |").expect(&text);
        let failed = text
            .find("| **failed**: redis bulk: 3 of 9 requests failed \\| 503 more |")
            .expect(&text);
        assert!(get < failed, "{text}");
    }
}
