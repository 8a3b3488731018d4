//! `TestServer`: the real `presenced` binary on a loopback port, a fresh data
//! directory, the manual clock, and tokens minted with the data directory's key.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use presenced_domain::Guid;
use presenced_identity::{DevIssuerKey, Subject, TokenRequest};
use serde_json::{Value, json};

pub const TENANT: &str = "4f5e1d6c-2b3a-4c9d-8e7f-0a1b2c3d4e5f";
pub const OTHER_TENANT: &str = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d";
/// The user every capture addresses.
pub const ADELE: &str = "fa8bf3dc-eca7-46b7-bad1-db199b62afc3";
/// The second user of the getPresencesByUserId capture.
pub const MEGAN: &str = "66825e03-7ef5-42da-9069-724602c31f6b";
pub const LEE: &str = "0b6c3a7e-52a1-4f0e-9d4b-3c2e1f0a9b8c";
/// A user of the other tenant.
pub const OUTSIDER: &str = "7d1e2f3a-4b5c-4d6e-8f7a-9b0c1d2e3f4a";
/// A GUID that is no user at all.
pub const NOBODY: &str = "00000000-0000-4000-8000-00000000dead";
pub const APP: &str = "22553876-f5ab-4529-bffb-cfe50aa89f87";
pub const OTHER_APP: &str = "5b1c0a2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d";
/// The client secret of `APP` with the built-in identity provider.
pub const APP_SECRET: &str = "softphone-secret";
pub const ADELE_PASSWORD: &str = "adele-password";
/// The client secret of `APP` in the other tenant.
pub const OTHER_TENANT_SECRET: &str = "fabrikam-secret";

/// A data directory holding a signing key, made once per test run so that
/// each server start does not generate a new RSA key.
static TEMPLATE: LazyLock<tempfile::TempDir> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temp dir");
    DevIssuerKey::load_or_create(dir.path()).expect("signing key");
    dir
});

pub fn directory_json() -> Value {
    json!({"tenants": [
        {"id": TENANT, "displayName": "Contoso", "applications": [
            {"appId": APP, "displayName": "Softphone", "secrets": [APP_SECRET],
             "roles": ["Presence.Read.All", "Presence.ReadWrite.All"],
             "scopes": ["Presence.Read", "Presence.Read.All", "Presence.ReadWrite"]},
            {"appId": OTHER_APP, "displayName": "Wallboard", "secrets": ["wallboard-secret"], "roles": ["Presence.Read.All"]}
        ], "users": [
            {"id": ADELE, "userPrincipalName": "adele.vance@contoso.com", "displayName": "Adele Vance", "password": ADELE_PASSWORD,
             "mail": "adele.vance@contoso.com", "givenName": "Adele", "surname": "Vance", "jobTitle": "Retail Manager",
             "officeLocation": "18/2111", "preferredLanguage": "en-US", "businessPhones": ["+1 425 555 0109"]},
            {"id": MEGAN, "userPrincipalName": "megan.bowen@contoso.com", "displayName": "Megan Bowen"},
            {"id": LEE, "userPrincipalName": "lee.gu@contoso.com", "displayName": "Lee Gu"}
        ]},
        {"id": OTHER_TENANT, "displayName": "Fabrikam", "applications": [
            {"appId": APP, "displayName": "Softphone", "secrets": [OTHER_TENANT_SECRET], "roles": ["Presence.Read.All"]}
        ], "users": [
            {"id": OUTSIDER, "userPrincipalName": "outsider@fabrikam.com", "displayName": "Outsider"}
        ]}
    ]})
}

/// The store a [`TestServer`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// redb in the server's data directory.
    Embedded,
    /// This test binary's shared Redis Cluster, under a key prefix of the server's own.
    Redis,
}

tokio::task_local! {
    /// The backend of the servers a test starts; set by [`both!`].
    static BACKEND: Backend;
}

/// Runs `test` with every [`TestServer`] it starts on `backend`.
pub async fn on_backend(backend: Backend, test: impl std::future::Future<Output = ()>) {
    BACKEND.scope(backend, test).await
}

/// The backend of the test being run: [`Backend::Embedded`] outside [`both!`].
pub fn current_backend() -> Backend {
    BACKEND.try_with(|b| *b).unwrap_or(Backend::Embedded)
}

/// Runs each test twice, as `NAME::embedded` and `NAME::redis`: every
/// server it starts runs on that store. The tests keep their own attributes
/// (`#[tokio::test]`).
macro_rules! both {
    ($($(#[$meta:meta])* async fn $name:ident() $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(#[$meta])*
            async fn embedded() {
                $crate::helpers::on_backend($crate::helpers::Backend::Embedded, async move $body).await
            }

            $(#[$meta])*
            async fn redis() {
                $crate::helpers::on_backend($crate::helpers::Backend::Redis, async move $body).await
            }
        }
    )*};
}
pub(crate) use both;

/// How a server on Redis reaches its cluster: flags, and its key prefix.
#[derive(Debug, Clone)]
pub struct RedisSetup {
    pub urls: String,
    pub key_prefix: String,
}

impl RedisSetup {
    /// A fresh key prefix on the shared cluster, with nothing under it.
    pub fn empty() -> RedisSetup {
        RedisSetup::empty_on(presenced_testkit::RedisCluster::shared())
    }

    /// A fresh key prefix on `cluster`, with nothing under it.
    pub fn empty_on(cluster: &presenced_testkit::RedisCluster) -> RedisSetup {
        RedisSetup {
            urls: cluster.urls().join(","),
            key_prefix: cluster.unique_prefix("api"),
        }
    }

    /// A fresh key prefix on the shared cluster, holding the template's
    /// signing key already (so that no server start generates an RSA key).
    pub fn fresh() -> RedisSetup {
        RedisSetup::fresh_on(presenced_testkit::RedisCluster::shared())
    }

    /// [`RedisSetup::fresh`] on `cluster`.
    pub fn fresh_on(cluster: &presenced_testkit::RedisCluster) -> RedisSetup {
        let setup = RedisSetup::empty_on(cluster);
        let key = format!("{}{{g}}:issuer-key", setup.key_prefix);
        let pem = std::fs::read_to_string(TEMPLATE.path().join("keys/issuer-rs256.pem"))
            .expect("the template's key");
        let node = cluster.node_of(&key).expect("the key's node");
        cluster
            .command(node, &["SET", &key, &pem, "NX"])
            .expect("store the signing key");
        setup
    }

    /// `--store redis --redis-url URLS`.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--store".into(),
            "redis".into(),
            "--redis-url".into(),
            self.urls.clone(),
        ]
    }

    /// The key prefix, as the configuration's environment variable.
    pub fn env(&self) -> (&'static str, String) {
        (
            "PRESENCED_STORE__REDIS__KEY_PREFIX",
            self.key_prefix.clone(),
        )
    }
}

pub struct TestServer {
    pub data_dir: tempfile::TempDir,
    /// Set when the server runs on Redis.
    pub redis: Option<RedisSetup>,
    pub base: String,
    /// `https://ADDR` when started with `--tls-listen`.
    pub tls_base: Option<String>,
    pub client: reqwest::Client,
    child: Child,
    extra_args: Vec<String>,
    /// The server's log lines (stderr) so far, also copied to the test's.
    logs: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    /// A server on the manual clock with throttling off.
    pub async fn start() -> TestServer {
        TestServer::start_with(&["--clock", "manual", "--throttle", "off"]).await
    }

    /// A server with a configuration file holding `toml`, and `args`.
    pub async fn start_with_config(toml: &str, args: &[&str]) -> TestServer {
        TestServer::launch(Some(toml), args, &directory_json())
    }

    pub async fn start_with(args: &[&str]) -> TestServer {
        TestServer::launch(None, args, &directory_json())
    }

    /// With another directory than [`directory_json`].
    pub async fn start_with_directory(args: &[&str], directory: &Value) -> TestServer {
        TestServer::launch(None, args, directory)
    }

    /// In `data_dir` (e.g. one with a small file system mounted on it).
    pub async fn start_in(data_dir: tempfile::TempDir, args: &[&str]) -> TestServer {
        TestServer::launch_in(data_dir, None, args, &directory_json())
    }

    /// On Redis under `redis`'s key prefix, whatever the test's backend.
    pub async fn start_on_redis(redis: RedisSetup, args: &[&str]) -> TestServer {
        TestServer::start_on_redis_with_directory(redis, args, &directory_json()).await
    }

    /// [`TestServer::start_on_redis`] with another directory.
    pub async fn start_on_redis_with_directory(
        redis: RedisSetup,
        args: &[&str],
        directory: &Value,
    ) -> TestServer {
        let data_dir = tempfile::tempdir().expect("temp dir");
        TestServer::launch_on(data_dir, None, args, directory, Some(redis))
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn launch(config: Option<&str>, args: &[&str], directory: &Value) -> TestServer {
        let data_dir = tempfile::tempdir().expect("temp dir");
        TestServer::launch_in(data_dir, config, args, directory)
    }

    fn launch_in(
        data_dir: tempfile::TempDir,
        config: Option<&str>,
        args: &[&str],
        directory: &Value,
    ) -> TestServer {
        let redis = (current_backend() == Backend::Redis).then(RedisSetup::fresh);
        TestServer::launch_on(data_dir, config, args, directory, redis)
    }

    fn launch_on(
        data_dir: tempfile::TempDir,
        config: Option<&str>,
        args: &[&str],
        directory: &Value,
        redis: Option<RedisSetup>,
    ) -> TestServer {
        install_crypto_provider();
        // Made before the process starts, so that nothing can fail between
        // starting it and owning it (which kills it when dropped).
        let client = reqwest::Client::new();
        copy_dir(TEMPLATE.path(), data_dir.path());
        let directory_file = data_dir.path().join("directory.json");
        std::fs::write(&directory_file, directory.to_string()).unwrap();
        let directory = directory_file;
        let mut extra_args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        extra_args.extend(["--directory".to_string(), directory.display().to_string()]);
        if let Some(toml) = config {
            let file = data_dir.path().join("presenced.toml");
            std::fs::write(&file, toml).unwrap();
            extra_args.extend(["--config".to_string(), file.display().to_string()]);
        }
        if let Some(redis) = &redis {
            extra_args.extend(redis.args());
        }
        let (child, base, tls_base, logs) = spawn(data_dir.path(), &extra_args, redis.as_ref());
        TestServer {
            logs,
            data_dir,
            redis,
            base,
            tls_base,
            client,
            child,
            extra_args,
        }
    }

    /// What the identity provider keeps as `file` of the data directory, or
    /// as the shared value `name` on Redis.
    pub fn identity_state(&self, file: &str, name: &str) -> String {
        match &self.redis {
            None => std::fs::read_to_string(self.data_dir.path().join(file)).unwrap(),
            Some(redis) => {
                let cluster = presenced_testkit::RedisCluster::shared();
                let key = format!("{}{{g}}:x:{name}", redis.key_prefix);
                let node = cluster.node_of(&key).unwrap();
                cluster.command(node, &["HGET", &key, "b"]).unwrap()
            }
        }
    }

    /// Kills the server with SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.send_sigterm();
        self.child.wait().unwrap()
    }

    /// Sends SIGTERM without waiting.
    pub fn send_sigterm(&self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    /// Waits up to 10 s for the server to exit.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The log lines the server wrote so far (since its last start).
    pub fn log_lines(&self) -> Vec<String> {
        self.logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Starts the server again on the same data directory and flags.
    pub fn restart(&mut self) {
        self.kill();
        let (child, base, tls_base, logs) =
            spawn(self.data_dir.path(), &self.extra_args, self.redis.as_ref());
        self.logs = logs;
        self.child = child;
        self.base = base;
        self.tls_base = tls_base;
    }

    /// The `https://` URL of `path`.
    pub fn tls_url(&self, path: &str) -> String {
        let base = self.tls_base.as_deref().expect("started with --tls-listen");
        format!("{base}{path}")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn token(&self, tenant: &str, user: Option<&str>, permissions: &str) -> String {
        let key = DevIssuerKey::load_or_create(self.data_dir.path()).unwrap();
        let words = permissions.split_whitespace().map(str::to_string).collect();
        let subject = match user {
            Some(user) => Subject::Delegated {
                user: guid(user),
                scopes: words,
            },
            None => Subject::Application { roles: words },
        };
        let request = TokenRequest {
            tenant: guid(tenant),
            app: guid(APP),
            subject,
            lifetime: SignedDuration::from_hours(1),
        };
        key.mint(&request, Timestamp::now()).unwrap()
    }

    /// Adele's delegated token with every presence scope.
    pub fn adele(&self) -> String {
        self.token(
            TENANT,
            Some(ADELE),
            "Presence.Read Presence.Read.All Presence.ReadWrite",
        )
    }

    /// An application token of the test tenant with read-write on everyone.
    pub fn app(&self) -> String {
        self.token(TENANT, None, "Presence.ReadWrite.All")
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        Answer::read(response).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        let response = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        Answer::read(response).await
    }

    /// POST with a raw body and optional Content-Type.
    pub async fn post_raw(
        &self,
        path: &str,
        token: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Answer {
        let mut request = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .body(body.to_vec());
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        Answer::read(request.send().await.unwrap()).await
    }

    /// Moves the manual clock forward.
    pub async fn advance(&self, by: &str) -> Timestamp {
        let answer = Answer::read(
            self.client
                .post(self.url("/admin/clock"))
                .json(&json!({"advance": by}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(answer.status, 200, "advance {by}: {}", answer.text);
        answer.json()["now"].as_str().unwrap().parse().unwrap()
    }

    pub async fn now(&self) -> Timestamp {
        let answer = Answer::read(
            self.client
                .get(self.url("/admin/clock"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        answer.json()["now"].as_str().unwrap().parse().unwrap()
    }

    /// `[availability, activity]` of a user as an app sees it.
    pub async fn presence_of(&self, user: &str) -> [String; 2] {
        let answer = self
            .get(&format!("/v1.0/users/{user}/presence"), &self.app())
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        let json = answer.json();
        [
            json["availability"].as_str().unwrap().into(),
            json["activity"].as_str().unwrap().into(),
        ]
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn guid(text: &str) -> Guid {
    Guid::parse(text).unwrap()
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    pub async fn read(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        Answer {
            status,
            headers,
            text,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a Graph error envelope with this status and code.
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{}", self.text);
        let json = self.json();
        assert_eq!(json["error"]["code"], code, "{}", self.text);
        let inner = &json["error"]["innerError"];
        assert!(
            inner["request-id"].is_string() && inner["date"].is_string(),
            "{}",
            self.text
        );
        assert_eq!(inner["request-id"].as_str(), self.header("request-id"));
        json["error"]["message"].as_str().unwrap().to_string()
    }

    /// Asserts Graph's action answer: 200, empty body, no Content-Type.
    pub fn assert_done(&self) {
        assert_eq!(self.status, 200, "{}", self.text);
        assert!(self.text.is_empty(), "{}", self.text);
        assert!(self.header("content-type").is_none());
    }
}

/// rustls with `ring`, the server's provider, for every HTTPS client here.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client that trusts only the CA certificates in `ca_pem`.
pub fn https_client(ca_pem: &[u8], version: HttpVersion) -> reqwest::Client {
    install_crypto_provider();
    let roots = reqwest::Certificate::from_pem_bundle(ca_pem).expect("PEM certificates");
    let builder = reqwest::Client::builder()
        .tls_certs_only(roots)
        .timeout(Duration::from_secs(10));
    match version {
        HttpVersion::Negotiated => builder,
        HttpVersion::Http1Only => builder.http1_only(),
    }
    .build()
    .expect("an HTTPS client")
}

/// Which HTTP versions an HTTPS client offers in ALPN.
#[derive(Debug, Clone, Copy)]
pub enum HttpVersion {
    /// `h2` and `http/1.1`, as the Python SDK's client.
    Negotiated,
    Http1Only,
}

fn spawn(
    data_dir: &Path,
    args: &[String],
    redis: Option<&RedisSetup>,
) -> (Child, String, Option<String>, Arc<Mutex<Vec<String>>>) {
    let wants_tls = args.iter().any(|arg| arg == "--tls-listen");
    let mut command = Command::new(env!("CARGO_BIN_EXE_presenced"));
    if let Some(redis) = redis {
        let (name, value) = redis.env();
        command.env(name, value);
    }
    let mut child = command
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start presenced");
    // Each log line is kept for the test and copied to the test's stderr.
    let logs = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().unwrap();
    let kept = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            kept.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(line);
        }
    });
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut wanted = if wants_tls { 2 } else { 1 };
        for line in lines.by_ref().map_while(Result::ok) {
            if let Some(address) = line.strip_prefix("presenced listening on ") {
                let _ = sender.send(address.to_string());
                wanted -= 1;
                if wanted == 0 {
                    break;
                }
            }
        }
        for _ in lines {}
    });
    let mut wait = || match receiver.recv_timeout(Duration::from_secs(30)) {
        Ok(address) => address,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("presenced did not start in 30 s");
        }
    };
    let base = wait();
    let tls_base = wants_tls.then(&mut wait);
    assert!(base.starts_with("http://"), "{base}");
    (child, base, tls_base, logs)
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target: PathBuf = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The claims of a JWT's payload (no signature check: the server's answer is
/// what is under test).
pub fn token_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("the payload is base64url"),
    )
    .expect("the payload is JSON")
}
