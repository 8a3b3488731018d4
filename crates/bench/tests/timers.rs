//! A small run of the `timers` scenario, so that it cannot rot: the debug
//! `presenced` binary, 3,000 session expiries within 3 seconds.

use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn three_thousand_expiries_within_three_seconds_are_all_handled() {
    let binary = presenced_bench::process::presenced_beside_tests();
    let window = Duration::from_secs(3);
    let report = presenced_bench::timers::timers(&binary, 3000, window)
        .await
        .unwrap();
    assert_eq!(report.sessions, 3000);
    assert_eq!(report.window, window);
    assert_eq!(report.processed, 3000, "{report:?}");
    assert!(
        report.handled_in >= window.saturating_sub(Duration::from_millis(100)),
        "the last expiry was handled before it was due: {report:?}"
    );
    assert!(
        report
            .markdown()
            .contains("3000 session expiries within 3 s"),
        "{}",
        report.markdown()
    );
}
