//! The benchmark suite at smoke size (tiny sizes, a second or less per run,
//! no targets), against the debug binaries, so that it cannot rot: wrk
//! driving the closed-loop runs, the generator check, the Redis anchors and
//! presenced on a Redis Cluster included.

use std::path::PathBuf;

use presenced_bench::process::Binaries;
use presenced_bench::suite::{self, Settings};

#[test]
fn every_scenario_runs_and_reports_its_rows() {
    let binaries = Binaries {
        presenced: presenced_bench::process::presenced_beside_tests(),
        bench: PathBuf::from(env!("CARGO_BIN_EXE_presenced-bench")),
    };
    let report = suite::run(&binaries, &Settings::smoke());
    let text = report.markdown();
    assert!(report.failed.is_none(), "the run failed:\n{text}");
    for row in [
        "| load: a session and a preferred presence for each of 300 users |",
        "| get — baseline |",
        "| get — baseline, workspace generator |",
        "generator check: the workspace generator reaches",
        "| get |",
        "| get at half rate (",
        ") — baseline |",
        "| set — baseline |",
        "| set (durable) |",
        "| bulk (650 ids) |",
        "| mixed (contact centre) |",
        "| Redis SET, appendfsync always (durable) |",
        "| Redis SET, no persistence |",
        "| Redis GET, no persistence |",
        "| scale 200: get |",
        "| scale 400: set (durable) |",
        "| timers: 300 session expiries within 2 s |",
        "| redis: load, a session and a preferred presence for each of 300 users |",
        "| redis: get |",
        "| redis: get: Redis commands per request |",
        "| redis: set |",
        "| redis: set: Redis commands per request |",
        "| redis: bulk (650 ids) |",
        "| redis: bulk (650 ids): Redis commands per request |",
        "| Redis Cluster SET, 3 masters |",
        "| Redis Cluster GET, 3 masters |",
    ] {
        assert!(text.contains(row), "no row {row:?} in\n{text}");
    }
    for target in [
        "generator: the closed-loop runs are driven by wrk",
        "get: at least 0.7 × baseline",
        "get: p99 at half the maximum rate at most 1.5 × the baseline's p99",
        "set (durable): at least 0.5",
        "set (durable): at least 0.7 × Redis appendfsync always SET",
        "bulk: at least 20 ×",
        "scale: get at 400 users at least 0.9 × get at 200",
        "scale: set (durable) at 400 users at least 0.9 × set at 200",
        "scale: at most 300 B resident per user at 400",
        "scale: ready in under 5 s with 400 users",
        "timers: never more than 1 s behind",
        "redis: a get costs one Redis round trip",
        "redis: a write costs at most two Redis round trips",
        "redis: get at least 0.5 × presenced-embedded get",
    ] {
        assert!(text.contains(target), "no target {target:?} in\n{text}");
    }
    // Every measured row answered requests.
    assert!(
        report
            .rows
            .iter()
            .all(|row| row.rate.is_none_or(|rate| rate > 0.0)),
        "{text}"
    );
}
