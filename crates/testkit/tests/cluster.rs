//! The test cluster itself: it starts, serves every slot from its masters,
//! keeps replicas in sync when asked for them, and is gone after drop.

use std::time::{Duration, Instant};

use presenced_testkit::{ClusterOptions, RedisCluster, SLOTS, command, info_field};

/// Keys spread over every master, readable back from the node serving them.
fn assert_serves_keys(cluster: &RedisCluster, prefix: &str) {
    let mut used = std::collections::BTreeSet::new();
    for i in 0..64 {
        let key = format!("{prefix}{{b:{i:04}}}:k");
        let node = cluster.node_of(&key).expect("a node serves the key");
        assert_eq!(
            cluster
                .command(node, &["SET", &key, &i.to_string()])
                .unwrap(),
            "OK"
        );
        assert_eq!(
            cluster.command(node, &["GET", &key]).unwrap(),
            i.to_string()
        );
        used.insert(node);
    }
    assert_eq!(
        used.into_iter().collect::<Vec<_>>(),
        {
            let mut masters = cluster.master_ports();
            masters.sort_unstable();
            masters
        },
        "64 buckets spread over every master"
    );
}

#[test]
fn shared_cluster_has_three_masters_serving_every_slot() {
    let cluster = RedisCluster::shared();
    eprintln!(
        "shared 3-master cluster started in {:?}",
        cluster.started_in()
    );
    assert!(cluster.started_in() < Duration::from_secs(30));
    assert_eq!(cluster.master_ports().len(), 3);
    for port in cluster.ports() {
        let info = command(port, &["CLUSTER", "INFO"]).unwrap();
        assert_eq!(info_field(&info, "cluster_state"), Some("ok"), "{info}");
        assert_eq!(
            info_field(&info, "cluster_slots_assigned"),
            Some(SLOTS.to_string().as_str())
        );
        assert_eq!(info_field(&info, "cluster_size"), Some("3"));
    }
    assert_serves_keys(cluster, &cluster.unique_prefix("serves keys"));
}

#[test]
fn a_node_answers_moved_for_a_key_it_does_not_serve() {
    let cluster = RedisCluster::shared();
    let key = format!("{}k", cluster.unique_prefix("moved"));
    let owner = cluster.node_of(&key).unwrap();
    let other = cluster
        .master_ports()
        .into_iter()
        .find(|p| *p != owner)
        .unwrap();
    let e = cluster.command(other, &["GET", &key]).unwrap_err();
    assert!(e.0.contains("MOVED"), "{e}");
}

#[test]
fn unique_prefixes_differ() {
    let cluster = RedisCluster::shared();
    let a = cluster.unique_prefix("same name");
    let b = cluster.unique_prefix("same name");
    assert_ne!(a, b);
    assert!(!a.contains('{') && !a.contains('}'), "{a}");
}

#[test]
fn replicas_follow_their_masters_and_everything_stops_on_drop() {
    let options = ClusterOptions {
        replicas_per_master: 1,
        ..ClusterOptions::default()
    };
    let cluster = RedisCluster::start(options).expect("cluster with replicas starts");
    eprintln!(
        "3 masters + 3 replicas started in {:?}",
        cluster.started_in()
    );
    let ports = cluster.ports();
    assert_eq!(ports.len(), 6);
    for port in cluster.master_ports() {
        let info = command(port, &["INFO", "replication"]).unwrap();
        assert_eq!(info_field(&info, "role"), Some("master"));
        assert_eq!(info_field(&info, "connected_slaves"), Some("1"), "{info}");
    }
    assert_serves_keys(&cluster, "replicas:");
    // A write reaches the master's replica: WAIT 1 confirms it.
    let key = "replicas:{b:0001}:waited";
    let node = cluster.node_of(key).unwrap();
    cluster.command(node, &["SET", key, "v"]).unwrap();
    assert_eq!(cluster.command(node, &["WAIT", "1", "5000"]).unwrap(), "1");

    drop(cluster);
    let deadline = Instant::now() + Duration::from_secs(10);
    for port in ports {
        while command(port, &["PING"]).is_ok() {
            assert!(
                Instant::now() < deadline,
                "node {port} still answers after drop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn a_killed_master_is_replaced_by_its_replica() {
    let options = ClusterOptions {
        replicas_per_master: 1,
        node_timeout: Duration::from_millis(1_000),
        ..ClusterOptions::default()
    };
    let mut cluster = RedisCluster::start(options).expect("cluster with replicas starts");
    let key = "failover:{b:0002}:k";
    let old = cluster.node_of(key).unwrap();
    cluster.command(old, &["SET", key, "kept"]).unwrap();
    assert_eq!(cluster.command(old, &["WAIT", "1", "5000"]).unwrap(), "1");
    cluster.kill_node(old).unwrap();
    let killed_at = Instant::now();
    let deadline = killed_at + Duration::from_secs(30);
    let new = loop {
        if Instant::now() >= deadline {
            for port in cluster.ports() {
                eprintln!(
                    "== {port}: {:?}",
                    cluster.command(port, &["CLUSTER", "NODES"])
                );
                eprintln!(
                    "== {port} repl: {:?}",
                    cluster.command(port, &["INFO", "replication"])
                );
            }
            panic!("no replica took over within 30 s");
        }
        if let Ok(node) = cluster.node_of(key)
            && node != old
            && cluster
                .command(node, &["GET", key])
                .is_ok_and(|v| v == "kept")
        {
            break node;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "replica {new} took over from {old} in {:?}",
        killed_at.elapsed()
    );
}
