//! A small run of the `notify-fade` benchmark, so that it cannot rot: the
//! debug `presenced` binary, 50 users.

#[tokio::test(flavor = "multi_thread")]
async fn fifty_fading_users_all_reach_the_receiver() {
    let binary = presenced_bench::process::presenced_beside_tests();
    let report = presenced_bench::notify_fade(&binary, 50).await.unwrap();
    assert_eq!(report.users, 50);
    assert!(
        report.markdown().contains("50 subscribed users"),
        "{}",
        report.markdown()
    );
}
