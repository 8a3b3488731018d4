//! The `presenced` command: `serve` runs the server, `token` mints a
//! development access token, `status` asks a running server how it is.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use jiff::SignedDuration;
use presenced::api::throttle::Limit;
use presenced::backend::OpenStore;
use presenced::clock::ClockKind;
use presenced::config::{Backend, FileConfig, StoreChoice};
use presenced::logging::BackgroundWriter;
use presenced::server::{ServeConfig, serve};
use presenced_domain::duration::parse_duration;
use presenced_domain::{DurationSyntax, Guid, Rules};
use presenced_identity::{DevIssuerKey, Subject, TokenRequest};

/// mimalloc rather than the system allocator: a request makes dozens of
/// small allocations (hyper, axum, JSON, the store's page buffers), and
/// glibc's malloc and free were 15-20% of the server's time under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "presenced",
    version,
    about = "A presence service that speaks the Microsoft Graph presence API."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Print one development access token signed with the development issuer's key (the data
    /// directory's, or the Redis cluster's with --store redis).
    Token(TokenArgs),
    /// Write the store's directory, presence and subscriptions to stdout as JSON lines.
    Export(TransferArgs),
    /// Read an export from stdin into the store (refused into a store with a directory unless --force).
    Import(ImportArgs),
    /// Ask a running server for its readiness and figures (exit 0 ready,
    /// 1 not ready, 2 unreachable).
    Status(StatusArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Where the store and the signing key live.
    #[arg(long, env = "PRESENCED_DATA_DIR", default_value = "./presenced-data")]
    data_dir: PathBuf,
    /// The address to serve plain HTTP on; `off` with --tls-listen: HTTPS only.
    #[arg(long, env = "PRESENCED_LISTEN", default_value = "127.0.0.1:8080", value_parser = listen_address)]
    listen: ListenAddress,
    /// An address to serve HTTPS on as well (HTTP/2 and HTTP/1.1).
    #[arg(long, env = "PRESENCED_TLS_LISTEN")]
    tls_listen: Option<SocketAddr>,
    /// PEM certificate chain for HTTPS (default: a development CA's, in DATA_DIR/tls).
    #[arg(long, env = "PRESENCED_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "PRESENCED_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A directory file of tenants and users to load (adds and updates).
    #[arg(long, env = "PRESENCED_DIRECTORY")]
    directory: Option<PathBuf>,
    /// `manual` starts at the real time and moves only by POST /admin/clock.
    #[arg(long, env = "PRESENCED_CLOCK", value_enum, default_value = "system")]
    clock: ClockKind,
    /// Requests per app per tenant: `off`, or REQUESTS/SECONDSs.
    #[arg(long, env = "PRESENCED_THROTTLE", default_value = "1500/30s")]
    throttle: String,
    /// How long after its last refresh an Available session reads AvailableInactive.
    #[arg(long, env = "PRESENCED_FADE_INACTIVE", default_value = "PT5M")]
    fade_inactive: String,
    /// How long after its last refresh an Available session reads Away.
    #[arg(long, env = "PRESENCED_FADE_AWAY", default_value = "PT10M")]
    fade_away: String,
    /// The URL clients reach presenced at, behind a proxy (https://host[:port]): the identity provider's
    /// issuer and endpoints are named under it (default: the URL each request came to).
    #[arg(long, env = "PRESENCED_PUBLIC_URL")]
    public_url: Option<String>,
    /// A TOML configuration file (issuers, per-tenant throttling...).
    #[arg(long, env = "PRESENCED_CONFIG")]
    config: Option<PathBuf>,
    /// Also accept the Python SDK's timedelta text ("8:00:00") as a duration.
    #[arg(long, env = "PRESENCED_ACCEPT_PYTHON_DURATIONS")]
    accept_python_durations: bool,
    /// Also allow webhooks to http://127.0.0.1 and http://localhost (development, tests).
    #[arg(long, env = "PRESENCED_WEBHOOKS_ALLOW_LOOPBACK_HTTP")]
    webhooks_allow_loopback_http: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// Which store holds the state; win over the configuration file's `[store]`.
#[derive(Args)]
struct StoreArgs {
    /// `embedded` (default: the data directory) or `redis` (a Redis Cluster shared by many nodes).
    #[arg(long = "store", env = "PRESENCED_STORE", value_enum)]
    backend: Option<Backend>,
    /// Redis Cluster seed nodes, comma-separated: redis://[:PASSWORD@]host:port or rediss://...
    /// (a password may come from PRESENCED_REDIS_PASSWORD instead).
    #[arg(long, env = "PRESENCED_REDIS_URL", value_delimiter = ',')]
    redis_url: Option<Vec<String>>,
}

impl StoreArgs {
    fn choose(&self, file: &FileConfig) -> anyhow::Result<StoreChoice> {
        file.store.choose(
            self.backend,
            self.redis_url.as_deref(),
            std::env::var("PRESENCED_REDIS_PASSWORD").ok(),
        )
    }
}

#[derive(Args)]
struct TokenArgs {
    #[arg(long)]
    tenant: String,
    #[arg(long)]
    app: String,
    /// The signed-in user (delegated token); needs --scopes.
    #[arg(long, requires = "scopes", conflicts_with = "roles")]
    user: Option<String>,
    /// Delegated permissions, space-separated.
    #[arg(long, requires = "user")]
    scopes: Option<String>,
    /// Application permissions, space-separated.
    #[arg(long, required_unless_present = "user")]
    roles: Option<String>,
    #[arg(long, default_value = "PT1H")]
    lifetime: String,
    #[arg(long, env = "PRESENCED_DATA_DIR", default_value = "./presenced-data")]
    data_dir: PathBuf,
    /// The server's TOML configuration file, for its `[store]` section.
    #[arg(long, env = "PRESENCED_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
struct TransferArgs {
    #[arg(long, env = "PRESENCED_DATA_DIR", default_value = "./presenced-data")]
    data_dir: PathBuf,
    /// The server's TOML configuration file, for its `[store]` section.
    #[arg(long, env = "PRESENCED_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
struct ImportArgs {
    #[command(flatten)]
    target: TransferArgs,
    /// Merge into a store that already has a directory (tenants and users
    /// added or updated; facts and subscriptions of the same ids replaced).
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct StatusArgs {
    /// The server's base URL.
    #[arg(long, env = "PRESENCED_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// PEM CA certificates to trust for an https URL (default: DATA_DIR/tls/ca.pem, the development CA).
    #[arg(long)]
    cacert: Option<PathBuf>,
    #[arg(long, env = "PRESENCED_DATA_DIR", default_value = "./presenced-data")]
    data_dir: PathBuf,
    /// Print the server's JSON answer instead of lines.
    #[arg(long)]
    json: bool,
    /// How long to wait for the answer, ISO 8601.
    #[arg(long, default_value = "PT5S")]
    timeout: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => run_serve(args),
        Command::Token(args) => run_token(args),
        Command::Export(args) => run_transfer(args, None),
        Command::Import(args) => run_transfer(args.target, Some(args.force)),
        Command::Status(args) => return run_status(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("presenced: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--listen`: an address, or `None` for `off`.
#[derive(Debug, Clone, Copy)]
struct ListenAddress(Option<SocketAddr>);

fn listen_address(text: &str) -> Result<ListenAddress, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(ListenAddress(None));
    }
    text.parse()
        .map(|address| ListenAddress(Some(address)))
        .map_err(|_| format!("'{text}' is not an address such as 127.0.0.1:8080, nor 'off'"))
}

fn duration_flag(name: &str, text: &str) -> anyhow::Result<SignedDuration> {
    parse_duration(text, DurationSyntax::Iso8601).map_err(|e| anyhow::anyhow!("--{name}: {e}"))
}

fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    // Kept to the end of this function, so every line is written before exit.
    let (log, _log_guard) = BackgroundWriter::spawn(std::io::stderr())?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if !ansi {
        // The access log writes its lines itself, in the formatter's format.
        log.install_direct();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(log)
        .with_ansi(ansi)
        .init();
    let rules = Rules {
        fade_to_inactive: duration_flag("fade-inactive", &args.fade_inactive)?,
        fade_to_away: duration_flag("fade-away", &args.fade_away)?,
        // From the configuration file's `[limits]`, once it is read.
        ..Rules::default()
    };
    if args.listen.0.is_none() && args.tls_listen.is_none() {
        anyhow::bail!("--listen off needs --tls-listen: there must be something to serve on");
    }
    if rules.fade_to_away <= rules.fade_to_inactive {
        anyhow::bail!("--fade-away must be longer than --fade-inactive");
    }
    let mut file = FileConfig::load(args.config.as_deref())?;
    if let Some(url) = args.public_url {
        file.server.public_url = Some(url);
    }
    let store = args.store.choose(&file)?;
    let config = ServeConfig {
        data_dir: args.data_dir,
        store,
        listen: args.listen.0,
        tls_listen: args.tls_listen,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        directory: args.directory,
        clock: args.clock,
        throttle: Limit::parse(&args.throttle).map_err(|e| anyhow::anyhow!("--throttle: {e}"))?,
        file,
        rules,
        webhooks_allow_loopback_http: args.webhooks_allow_loopback_http,
        durations: if args.accept_python_durations {
            DurationSyntax::AlsoPythonTimedelta
        } else {
            DurationSyntax::Iso8601
        },
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(config))
}

/// `export` (`force` is `None`) or `import`.
fn run_transfer(args: TransferArgs, force: Option<bool>) -> anyhow::Result<()> {
    let file = FileConfig::load(args.config.as_deref())?;
    let choice = args.store.choose(&file)?;
    presenced::tls::install_provider();
    let rules = Rules::default();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let opened = OpenStore::open(
                &choice,
                &args.data_dir,
                rules,
                file.limits.max_user_record_bytes,
            )
            .await?;
            let result = match force {
                None => {
                    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                    presenced::transfer::export(&*opened.store, &mut out).await
                }
                Some(force) => {
                    let now = opened
                        .store
                        .manual_clock()
                        .await?
                        .unwrap_or_else(jiff::Timestamp::now);
                    let mut input = std::io::stdin().lock();
                    presenced::transfer::import(&opened, &mut input, force, now, &rules).await
                }
            };
            opened.store.close().await?;
            let counts = result?;
            let verb = if force.is_none() {
                "exported"
            } else {
                "imported"
            };
            eprintln!("presenced: {verb} {counts}");
            Ok(())
        })
}

fn run_status(args: StatusArgs) -> ExitCode {
    let timeout = match duration_flag("timeout", &args.timeout)
        .ok()
        .and_then(|d| std::time::Duration::try_from(d).ok())
    {
        Some(timeout) => timeout,
        None => {
            eprintln!(
                "presenced status: --timeout: '{}' is not a duration such as PT5S",
                args.timeout
            );
            return ExitCode::from(presenced::status::UNREACHABLE);
        }
    };
    presenced::status::run(&presenced::status::StatusRequest {
        url: args.url,
        cacert: args.cacert,
        data_dir: args.data_dir,
        json: args.json,
        timeout,
    })
}

fn run_token(args: TokenArgs) -> anyhow::Result<()> {
    let guid = |flag: &str, text: &str| {
        Guid::parse(text).ok_or_else(|| anyhow::anyhow!("--{flag}: '{text}' is not a GUID"))
    };
    let words = |text: &str| {
        text.split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let subject = match (&args.user, &args.scopes, &args.roles) {
        (Some(user), Some(scopes), None) => Subject::Delegated {
            user: guid("user", user)?,
            scopes: words(scopes),
        },
        (None, None, Some(roles)) => Subject::Application {
            roles: words(roles),
        },
        _ => anyhow::bail!("give either --user with --scopes, or --roles"),
    };
    let request = TokenRequest {
        tenant: guid("tenant", &args.tenant)?,
        app: guid("app", &args.app)?,
        subject,
        lifetime: duration_flag("lifetime", &args.lifetime)?,
    };
    let file = FileConfig::load(args.config.as_deref())?;
    let key = match args.store.choose(&file)? {
        StoreChoice::Embedded => DevIssuerKey::load_or_create(&args.data_dir)?,
        choice @ StoreChoice::Redis(_) => {
            presenced::tls::install_provider();
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async {
                    let opened =
                        OpenStore::open(&choice, &args.data_dir, Rules::default(), 64 * 1024)
                            .await?;
                    opened.issuer_key().await
                })?
        }
    };
    println!("{}", key.mint(&request, jiff::Timestamp::now())?);
    Ok(())
}
