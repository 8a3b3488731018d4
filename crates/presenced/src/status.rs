//! `presenced status`: asks a running server for `GET /admin/status` and
//! prints what it says.
//!
//! Exit codes: 0 ready, 1 answering but not ready, 2 not reachable (or not
//! answering as presenced does).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

/// What `presenced status` is told.
#[derive(Debug, Clone)]
pub struct StatusRequest {
    /// The server's base URL, such as `http://127.0.0.1:8080`.
    pub url: String,
    /// CA certificates (PEM) to trust for an `https` URL.
    pub cacert: Option<PathBuf>,
    /// Where the development CA is looked for when `cacert` is not given.
    pub data_dir: PathBuf,
    pub json: bool,
    pub timeout: Duration,
}

/// The server answered and is ready.
pub const READY: u8 = 0;
/// The server answered and is not ready.
pub const NOT_READY: u8 = 1;
/// The server could not be reached, or did not answer as presenced does.
pub const UNREACHABLE: u8 = 2;

/// Runs the command; prints to stdout, errors to stderr.
pub fn run(request: &StatusRequest) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("presenced status: {error}");
            return ExitCode::from(UNREACHABLE);
        }
    };
    match runtime.block_on(fetch(request)) {
        Ok(status) => {
            let ready = status.get("ready").and_then(Value::as_bool) == Some(true);
            if request.json {
                println!("{status}");
            } else {
                print!("{}", human(&request.url, &status));
            }
            ExitCode::from(if ready { READY } else { NOT_READY })
        }
        Err(error) => {
            eprintln!("presenced status: {error:#}");
            ExitCode::from(UNREACHABLE)
        }
    }
}

async fn fetch(request: &StatusRequest) -> anyhow::Result<Value> {
    let base = request.url.trim_end_matches('/');
    let parsed = reqwest::Url::parse(base)
        .map_err(|e| anyhow::anyhow!("--url: '{}' is not a URL ({e})", request.url))?;
    // reqwest builds its TLS settings even for http URLs.
    crate::tls::install_provider();
    let mut builder = reqwest::Client::builder()
        .timeout(request.timeout)
        .redirect(reqwest::redirect::Policy::none());
    match parsed.scheme() {
        "http" => {}
        "https" => {
            let pem = read_ca(request.cacert.as_deref(), &request.data_dir)?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| anyhow::anyhow!("the CA file holds no PEM certificate: {e}"))?;
            builder = builder.tls_certs_only(roots);
        }
        other => anyhow::bail!("--url: '{other}' is neither http nor https"),
    }
    let client = builder.build()?;
    let url = format!("{base}/admin/status");
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {url}: {e}"))?;
    let code = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: the answer broke off: {e}"))?;
    if !code.is_success() {
        anyhow::bail!("{url} answered {code}; is this presenced?");
    }
    let status: Value = serde_json::from_slice(&body)
        .map_err(|_| anyhow::anyhow!("{url} did not answer JSON; is this presenced?"))?;
    if status.get("ready").and_then(Value::as_bool).is_none() {
        anyhow::bail!("{url} did not answer presenced's status; is this presenced?");
    }
    Ok(status)
}

/// `--cacert`, or the data directory's development CA.
fn read_ca(cacert: Option<&Path>, data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = match cacert {
        Some(path) => path.to_path_buf(),
        None => data_dir.join("tls").join("ca.pem"),
    };
    std::fs::read(&path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the CA certificate {} ({e}); give --cacert for an https URL",
            path.display()
        )
    })
}

/// The lines a person reads.
pub fn human(url: &str, status: &Value) -> String {
    let number = |value: Option<&Value>| match value {
        Some(Value::Number(n)) => n.to_string(),
        _ => "unknown".to_owned(),
    };
    let seconds = |value: Option<&Value>| match value.and_then(Value::as_f64) {
        Some(s) => format!("{s:.3} s"),
        None => "unknown".to_owned(),
    };
    let text = |value: Option<&Value>| {
        value
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned()
    };
    let scheduler = status.get("scheduler");
    let outbox = status.get("outbox");
    let field = |parent: Option<&Value>, name: &str| parent.and_then(|p| p.get(name)).cloned();
    let ready = if status.get("ready").and_then(Value::as_bool) == Some(true) {
        "yes"
    } else {
        "no"
    };
    let lines = [
        format!("server:         {url}"),
        format!("ready:          {ready}"),
        format!("version:        {}", text(status.get("version"))),
        format!("store:          {}", text(status.get("store"))),
        format!("users:          {}", number(status.get("users"))),
        format!("live sessions:  {}", number(status.get("liveSessions"))),
        format!(
            "scheduler lag:  {} (max {}; {} deadlines due, {} processed)",
            seconds(field(scheduler, "lagSeconds").as_ref()),
            seconds(field(scheduler, "maxLagSeconds").as_ref()),
            number(field(scheduler, "deadlinesDue").as_ref()),
            number(field(scheduler, "processed").as_ref()),
        ),
        format!(
            "outbox depth:   {} (oldest due {} ago)",
            number(field(outbox, "entries").as_ref()),
            seconds(field(outbox, "oldestDueAgeSeconds").as_ref()),
        ),
    ];
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_figures_print_as_unknown() {
        let status = serde_json::json!({
            "ready": false, "version": "1.2.3", "store": "embedded", "users": null,
            "liveSessions": 2, "scheduler": {"lagSeconds": 1.5}, "outbox": {}
        });
        let text = human("http://x", &status);
        assert!(text.contains("ready:          no\n"), "{text}");
        assert!(text.contains("users:          unknown\n"), "{text}");
        assert!(text.contains("live sessions:  2\n"), "{text}");
        assert!(
            text.contains("scheduler lag:  1.500 s (max unknown;"),
            "{text}"
        );
    }
}
