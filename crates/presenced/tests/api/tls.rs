//! HTTPS: `--tls-listen` beside plain HTTP, the development CA in
//! `<data-dir>/tls/`, ALPN's choice of HTTP/2 or HTTP/1.1, and configured
//! certificate files used as given.

use reqwest::Version;

use crate::helpers::*;

const TLS: [&str; 6] = [
    "--clock",
    "manual",
    "--throttle",
    "off",
    "--tls-listen",
    "127.0.0.1:0",
];

fn development_ca(server: &TestServer) -> Vec<u8> {
    std::fs::read(server.data_dir.path().join("tls/ca.pem")).expect("the development CA")
}

#[tokio::test]
async fn https_with_the_development_ca_negotiates_http2_or_http1_and_serves_the_same_api() {
    let server = TestServer::start_with(&TLS).await;
    let ca = development_ca(&server);
    let token = server.adele();
    let cases = [
        (HttpVersion::Negotiated, Version::HTTP_2),
        (HttpVersion::Http1Only, Version::HTTP_11),
    ];
    for (offer, expected) in cases {
        let client = https_client(&ca, offer);
        let response = client
            .post(server.tls_url("/v1.0/me/presence/setPresence"))
            .bearer_auth(&token)
            .json(&serde_json::json!({
                "sessionId": APP, "availability": "Busy", "activity": "InACall",
                "expirationDuration": "PT1H"
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.version(), expected, "{offer:?}");
        Answer::read(response).await.assert_done();
        let response = client
            .get(server.tls_url("/v1.0/me/presence"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.version(), expected, "{offer:?}");
        let answer = Answer::read(response).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.json()["activity"], "InACall");
        let missing = client
            .get(server.tls_url("/v1.0/nowhere"))
            .send()
            .await
            .unwrap();
        Answer::read(missing).await.assert_error(404, "NotFound");
    }
    // Plain HTTP still serves the same state.
    assert_eq!(server.presence_of(ADELE).await, ["Busy", "InACall"]);
}

#[tokio::test]
async fn the_development_certificate_names_localhost_and_both_loopback_addresses() {
    let server = TestServer::start_with(&TLS).await;
    let client = https_client(&development_ca(&server), HttpVersion::Negotiated);
    let address: std::net::SocketAddr = server
        .tls_base
        .as_deref()
        .unwrap()
        .trim_start_matches("https://")
        .parse()
        .unwrap();
    let port = address.port();
    let by_name = reqwest::Client::builder()
        .resolve("localhost", address)
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&development_ca(&server)).unwrap())
        .build()
        .unwrap();
    let answer = Answer::read(
        by_name
            .get(format!("https://localhost:{port}/healthz"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let answer = Answer::read(client.get(server.tls_url("/healthz")).send().await.unwrap()).await;
    assert_eq!(answer.status, 200);
    let untrusting = reqwest::Client::builder()
        .tls_certs_only(Vec::new())
        .build()
        .unwrap();
    assert!(
        untrusting
            .get(server.tls_url("/healthz"))
            .send()
            .await
            .is_err(),
        "a client that does not trust the CA must refuse the certificate"
    );
}

#[tokio::test]
async fn the_development_ca_and_certificate_survive_a_restart() {
    let mut server = TestServer::start_with(&TLS).await;
    let tls = server.data_dir.path().join("tls");
    let files = ["ca.pem", "ca-key.pem", "server.pem", "server-key.pem"];
    let read = |name: &str| std::fs::read(tls.join(name)).unwrap();
    let before: Vec<_> = files.iter().map(|name| read(name)).collect();
    let client = https_client(&before[0], HttpVersion::Negotiated);
    server.restart();
    let after: Vec<_> = files.iter().map(|name| read(name)).collect();
    assert_eq!(before, after);
    let answer = Answer::read(client.get(server.tls_url("/healthz")).send().await.unwrap()).await;
    assert_eq!(answer.status, 200);

    // A lost server certificate is signed again by the same CA.
    std::fs::remove_file(tls.join("server.pem")).unwrap();
    server.restart();
    assert_eq!(read("ca.pem"), before[0]);
    assert_ne!(read("server.pem"), before[2]);
    let client = https_client(&before[0], HttpVersion::Negotiated);
    let answer = Answer::read(client.get(server.tls_url("/healthz")).send().await.unwrap()).await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn configured_certificate_files_are_used_as_given() {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let certificate = params.self_signed(&key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&cert_file, certificate.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let config = format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        cert_file.display().to_string(),
        key_file.display().to_string()
    );
    let server = TestServer::start_with_config(&config, &TLS).await;
    let client = https_client(certificate.pem().as_bytes(), HttpVersion::Negotiated);
    let response = client.get(server.tls_url("/healthz")).send().await.unwrap();
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert!(
        !server.data_dir.path().join("tls").exists(),
        "no development CA when a certificate is configured"
    );
}

#[tokio::test]
async fn a_certificate_without_its_key_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_presenced"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--tls-cert")
        .arg(dir.path().join("cert.pem"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--tls-key"), "{stderr}");
}

#[tokio::test]
async fn listen_off_serves_https_only() {
    install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_presenced"))
        .args(["serve", "--listen", "off", "--tls-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take_while(|line| !line.starts_with("HTTPS uses a development certificate"))
            .filter(|line| line.starts_with("presenced listening on "))
            .collect::<Vec<_>>()
    });
    let lines = tokio::task::spawn_blocking(move || lines.join().unwrap());
    let lines = tokio::time::timeout(std::time::Duration::from_secs(30), lines).await;
    let lines = match lines {
        Ok(lines) => lines.unwrap(),
        Err(_) => {
            let _ = child.kill();
            panic!("presenced did not start in 30 s");
        }
    };
    let ca = std::fs::read(dir.path().join("tls/ca.pem"));
    let base = lines.first().map(|line| {
        line.trim_start_matches("presenced listening on ")
            .to_string()
    });
    let answer = match (&ca, &base) {
        (Ok(ca), Some(base)) => https_client(ca, HttpVersion::Negotiated)
            .get(format!("{base}/healthz"))
            .send()
            .await
            .map(|response| response.status().as_u16()),
        _ => Ok(0),
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("https://"), "{lines:?}");
    assert_eq!(answer.unwrap(), 200);
}
