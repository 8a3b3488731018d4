//! A small run of the `notify-fade` benchmark, so that it cannot rot: the
//! debug `presenced` binary, 50 users.

use std::path::PathBuf;

#[tokio::test(flavor = "multi_thread")]
async fn fifty_fading_users_all_reach_the_receiver() {
    let binary = presenced_binary();
    let report = presenced_bench::notify_fade(&binary, 50).await.unwrap();
    assert_eq!(report.users, 50);
    assert!(
        report.markdown().contains("50 subscribed users"),
        "{}",
        report.markdown()
    );
}

/// `target/<profile>/presenced`, next to this test's `deps/` directory.
fn presenced_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let binary = profile_dir.join("presenced");
    assert!(
        binary.exists(),
        "{} is missing: build it first (cargo test --workspace builds it)",
        binary.display()
    );
    binary
}
