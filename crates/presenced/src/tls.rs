//! The HTTPS listener's certificate and rustls configuration.
//!
//! Configured certificate and key files are used as given. Without them, a
//! development CA in `<data-dir>/tls/` (`ca.pem`, `ca-key.pem`) signs a
//! server certificate (`server.pem`, `server-key.pem`) for `localhost`,
//! `127.0.0.1` and `::1`. Both are created once and reused; the server
//! certificate is signed again when it is missing, no longer chains to the CA
//! or expires within [`RENEW_BEFORE`]. Keys are written readable by their
//! owner only.
//!
//! Cryptography is rustls with the `ring` provider, chosen explicitly (no C
//! toolchain needed); ALPN offers `h2` and `http/1.1`. This module knows
//! nothing of HTTP beyond ALPN.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use rustls::ServerConfig;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// The names the development server certificate is valid for.
pub const DEVELOPMENT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// A development server certificate expiring sooner than this is replaced.
pub const RENEW_BEFORE: SignedDuration = SignedDuration::from_hours(30 * 24);
const SERVER_VALIDITY: SignedDuration = SignedDuration::from_hours(365 * 24);
const CA_VALIDITY: SignedDuration = SignedDuration::from_hours(10 * 365 * 24);
const CA_NAME: &str = "presenced development CA";

/// What went wrong while preparing TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read or write {path}: {source}")]
    File { path: PathBuf, source: io::Error },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error("the certificate or key is not usable: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot create the development certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum CertificateSource {
    /// PEM files used as given.
    Files { cert: PathBuf, key: PathBuf },
    /// The development CA under this data directory.
    Development { data_dir: PathBuf },
}

/// A ready rustls configuration, and the CA file to trust when it is ours.
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    /// `<data-dir>/tls/ca.pem` for the development CA; `None` for configured files.
    pub ca_file: Option<PathBuf>,
}

/// The one crypto provider of the process: `ring`.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes `ring` the process-wide default, so that no other rustls user in the
/// process picks a provider of its own. Idempotent.
pub fn install_provider() {
    presenced_identity::install_crypto_provider();
}

/// Loads (or creates) the certificate and builds the server configuration.
pub fn load(source: &CertificateSource, now: Timestamp) -> Result<ServerTls, TlsError> {
    let (chain, key, ca_file) = match source {
        CertificateSource::Files { cert, key } => (read_certificates(cert)?, read_key(key)?, None),
        CertificateSource::Development { data_dir } => {
            let files = DevelopmentFiles::new(data_dir);
            files.ensure(now)?;
            (
                read_certificates(&files.server)?,
                read_key(&files.server_key)?,
                Some(files.ca),
            )
        }
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ServerTls {
        config: Arc::new(config),
        ca_file,
    })
}

/// The four files of the development CA.
struct DevelopmentFiles {
    dir: PathBuf,
    ca: PathBuf,
    ca_key: PathBuf,
    server: PathBuf,
    server_key: PathBuf,
}

impl DevelopmentFiles {
    fn new(data_dir: &Path) -> DevelopmentFiles {
        let dir = data_dir.join("tls");
        DevelopmentFiles {
            ca: dir.join("ca.pem"),
            ca_key: dir.join("ca-key.pem"),
            server: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
            dir,
        }
    }

    /// Creates what is missing; renews the server certificate when needed.
    fn ensure(&self, now: Timestamp) -> Result<(), TlsError> {
        fs::create_dir_all(&self.dir).map_err(|e| file_error(&self.dir, e))?;
        let ca = match self.load_ca()? {
            Some(ca) => ca,
            None => self.create_ca(now)?,
        };
        if self.server_is_good(&ca.der, now + RENEW_BEFORE) {
            return Ok(());
        }
        tracing::info!(file = %self.server.display(), "signing a new development server certificate");
        self.create_server(&ca, now)?;
        if self.server_is_good(&ca.der, now) {
            return Ok(());
        }
        // The CA on disk was not made the way this version makes it (its
        // name differs), so what it signs does not chain: start over.
        tracing::warn!(file = %self.ca.display(), "the development CA cannot sign; creating a new one");
        let ca = self.create_ca(now)?;
        self.create_server(&ca, now)
    }

    fn load_ca(&self) -> Result<Option<Ca>, TlsError> {
        if !self.ca.exists() || !self.ca_key.exists() {
            return Ok(None);
        }
        let pem = fs::read_to_string(&self.ca_key).map_err(|e| file_error(&self.ca_key, e))?;
        let key = rcgen::KeyPair::from_pem(&pem)?;
        let der = read_certificates(&self.ca)?.swap_remove(0);
        Ok(Some(Ca { key, der }))
    }

    fn create_ca(&self, now: Timestamp) -> Result<Ca, TlsError> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = ca_params();
        set_validity(&mut params, now, CA_VALIDITY);
        let certificate = params.self_signed(&key)?;
        write_private_file(&self.ca_key, key.serialize_pem().as_bytes())?;
        write_file(&self.ca, certificate.pem().as_bytes())?;
        tracing::info!(file = %self.ca.display(), "created a development CA");
        Ok(Ca {
            key,
            der: certificate.der().clone(),
        })
    }

    fn create_server(&self, ca: &Ca, now: Timestamp) -> Result<(), TlsError> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(DEVELOPMENT_NAMES.map(String::from))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        set_validity(&mut params, now, SERVER_VALIDITY);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let issuer = rcgen::Issuer::new(ca_params(), &ca.key);
        let certificate = params.signed_by(&key, &issuer)?;
        write_private_file(&self.server_key, key.serialize_pem().as_bytes())?;
        write_file(&self.server, certificate.pem().as_bytes())
    }

    /// The server certificate exists, chains to `ca` and is valid for every
    /// development name at `at`.
    fn server_is_good(&self, ca: &CertificateDer<'static>, at: Timestamp) -> bool {
        let Ok(mut chain) = read_certificates(&self.server) else {
            return false;
        };
        if !self.server_key.exists() {
            return false;
        }
        let leaf = chain.swap_remove(0);
        let mut roots = rustls::RootCertStore::empty();
        if roots.add(ca.clone()).is_err() {
            return false;
        }
        let Ok(verifier) =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider()).build()
        else {
            return false;
        };
        let at = UnixTime::since_unix_epoch(Duration::from_secs(
            u64::try_from(at.as_second()).unwrap_or(0),
        ));
        DEVELOPMENT_NAMES.iter().all(|name| {
            ServerName::try_from(*name).is_ok_and(|name| {
                verifier
                    .verify_server_cert(&leaf, &[], &name, &[], at)
                    .is_ok()
            })
        })
    }
}

/// The development CA's signing key and certificate.
struct Ca {
    key: rcgen::KeyPair,
    der: CertificateDer<'static>,
}

/// The CA's parameters; also rebuilt on every start to sign with a stored
/// key, so they must not change between versions.
fn ca_params() -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, CA_NAME);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "presenced");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// Valid from the day before `now` (clocks differ) for `length`, in whole
/// UTC days.
fn set_validity(params: &mut rcgen::CertificateParams, now: Timestamp, length: SignedDuration) {
    let day = |at: Timestamp| {
        let day = at.to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
        rcgen::date_time_ymd(
            i32::from(day.year()),
            u8::try_from(day.month()).unwrap_or(1),
            u8::try_from(day.day()).unwrap_or(1),
        )
    };
    params.not_before = day(now - SignedDuration::from_hours(24));
    params.not_after = day(now + length);
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = fs::read(path).map_err(|e| file_error(path, e))?;
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: path.into() });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = fs::read(path).map_err(|e| file_error(path, e))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| TlsError::NoKey { path: path.into() })
}

fn file_error(path: &Path, source: io::Error) -> TlsError {
    TlsError::File {
        path: path.into(),
        source,
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    replace_file(path, bytes, 0o644)
}

fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    replace_file(path, bytes, 0o600)
}

/// Writes a sibling temporary file, makes it durable, then renames it over
/// `path`: a crash never leaves half a key.
fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    let write = || -> io::Result<()> {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let mut file = options.open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&temporary);
        file_error(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn development(dir: &Path) -> CertificateSource {
        CertificateSource::Development {
            data_dir: dir.to_path_buf(),
        }
    }

    #[test]
    fn the_development_ca_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::now();
        let first = load(&development(dir.path()), now).unwrap();
        let ca_file = first.ca_file.unwrap();
        assert_eq!(ca_file, dir.path().join("tls/ca.pem"));
        let files = DevelopmentFiles::new(dir.path());
        let before = [&files.ca, &files.ca_key, &files.server, &files.server_key]
            .map(|path| fs::read(path).unwrap());
        load(
            &development(dir.path()),
            now + SignedDuration::from_hours(24),
        )
        .unwrap();
        let after = [&files.ca, &files.ca_key, &files.server, &files.server_key]
            .map(|path| fs::read(path).unwrap());
        assert_eq!(before, after);
    }

    #[cfg(unix)]
    #[test]
    fn keys_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        load(&development(dir.path()), Timestamp::now()).unwrap();
        for name in ["ca-key.pem", "server-key.pem"] {
            let mode = fs::metadata(dir.path().join("tls").join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }

    #[test]
    fn a_missing_or_expiring_server_certificate_is_signed_again_by_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let files = DevelopmentFiles::new(dir.path());
        let now = Timestamp::now();
        load(&development(dir.path()), now).unwrap();
        let ca = fs::read(&files.ca).unwrap();
        let ca_der = read_certificates(&files.ca).unwrap().swap_remove(0);
        let cases = [
            ("missing", now, true),
            ("expiring", now + SERVER_VALIDITY - RENEW_BEFORE / 2, false),
        ];
        for (case, at, remove) in cases {
            if remove {
                fs::remove_file(&files.server).unwrap();
            }
            let old = fs::read(&files.server).ok();
            load(&development(dir.path()), at).unwrap();
            assert_ne!(fs::read(&files.server).ok(), old, "{case}");
            assert_eq!(fs::read(&files.ca).unwrap(), ca, "{case}");
            assert!(files.server_is_good(&ca_der, at + RENEW_BEFORE), "{case}");
        }
    }

    #[test]
    fn configured_files_that_are_not_pem_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        fs::write(&cert, "not a certificate").unwrap();
        fs::write(&key, "not a key").unwrap();
        let source = CertificateSource::Files {
            cert: cert.clone(),
            key,
        };
        let error = load(&source, Timestamp::now()).err().unwrap().to_string();
        assert!(error.contains(&cert.display().to_string()), "{error}");
    }
}
