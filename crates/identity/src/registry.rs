//! App registrations and test users of the built-in identity provider.
//!
//! The directory file declares, per tenant, applications (client id, client
//! secrets, granted application permissions, delegated permissions the app
//! may ask for) and users' passwords for the delegated test grant. The
//! registry keeps them — secrets and passwords only as salted SHA-256
//! digests — in `<data-dir>/identity/registrations.json` (or the shared
//! store's [`StateCell`] when several nodes serve), so they survive a
//! restart without the directory file. Loading again adds and updates.
//!
//! This module knows credentials; it does not know OAuth2's wire format
//! (the API layer does) or which permission an operation needs.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::state::{FileCell, StateCell};
use crate::{Guid, IdentityError};

/// The registry file, relative to the data directory.
pub const REGISTRY_FILE: &str = "identity/registrations.json";

/// An application as the directory file declares it (secrets in clear).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApplication {
    pub app: Guid,
    pub display_name: String,
    pub secrets: Vec<String>,
    /// Application permissions granted (the `roles` of its app-only tokens).
    pub roles: Vec<String>,
    /// Delegated permissions the app may ask for.
    pub scopes: Vec<String>,
    /// Where the authorization endpoint may send codes ([`check_redirect_uri`]).
    pub redirect_uris: Vec<String>,
}

/// Why a redirect URI cannot be registered, or `Ok`: an absolute `https://` URL, or `http://` on a
/// loopback host (`localhost`, `127.0.0.1`, `[::1]`) for native and development apps, as Entra allows;
/// no fragment, no user info, at most 256 bytes, no spaces or control characters.
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    if uri.len() > 256
        || uri
            .bytes()
            .any(|b| b <= b' ' || b == 0x7f || b == b'"' || b == b'<' || b == b'>')
    {
        return Err(format!(
            "redirect URI {uri:?} is too long or has spaces, quotes or control characters"
        ));
    }
    if uri.contains('#') {
        return Err(format!("redirect URI {uri:?} has a fragment"));
    }
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(format!("redirect URI {uri:?} is not an absolute URL"));
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if !crate::mint::is_authority(authority) {
        return Err(format!("redirect URI {uri:?} has no valid host"));
    }
    match scheme {
        "https" => Ok(()),
        "http" if is_loopback(authority) => Ok(()),
        _ => Err(format!(
            "redirect URI {uri:?} must be https, or http on localhost, 127.0.0.1 or [::1]"
        )),
    }
}

fn loopback_host(authority: &str) -> Option<&str> {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest
            .split(']')
            .next()
            .map(|h| if h == "::1" { "[::1]" } else { h }),
        None => authority.split(':').next(),
    }?;
    ["localhost", "127.0.0.1", "[::1]"]
        .into_iter()
        .find(|l| l.eq_ignore_ascii_case(host))
}

fn is_loopback(authority: &str) -> bool {
    loopback_host(authority).is_some()
}

/// Whether `asked` is `registered`: exactly (scheme and host without regard to case), except that for
/// an `http` loopback URI the port may differ (RFC 8252 §7.3: native apps listen on any free port).
fn redirect_uri_matches(registered: &str, asked: &str) -> bool {
    fn split(uri: &str) -> Option<(String, &str, &str)> {
        let (scheme, rest) = uri.split_once("://")?;
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        Some((scheme.to_ascii_lowercase(), &rest[..end], &rest[end..]))
    }
    let (Some((s1, a1, p1)), Some((s2, a2, p2))) = (split(registered), split(asked)) else {
        return false;
    };
    let path = |p: &str| {
        if p.is_empty() {
            "/".to_string()
        } else {
            p.to_string()
        }
    };
    if s1 != s2 || path(p1) != path(p2) {
        return false;
    }
    if s1 == "http"
        && let (Some(h1), Some(h2)) = (loopback_host(a1), loopback_host(a2))
    {
        return h1 == h2 && crate::mint::is_authority(a2);
    }
    a1.eq_ignore_ascii_case(a2)
}

/// The client id of the presence board that presenced serves at `/`: a public client that every
/// tenant has without registering it. Its only redirect URI is the server's own origin (`{origin}/`,
/// decided by the API layer per request, see [`Application::builtin`]); a directory file that registers
/// an application with this id replaces it in that tenant.
pub const BOARD_APP_ID: Guid = Guid::from_u128(0x5e1fb0a4_d000_4000_8000_000000000001);

/// The delegated permissions the board may ask for: people's names, everyone's presence, one's own.
pub const BOARD_SCOPES: [&str; 3] = [
    "User.ReadBasic.All",
    "Presence.Read.All",
    "Presence.ReadWrite",
];

static BOARD: LazyLock<Application> = LazyLock::new(|| Application {
    app: BOARD_APP_ID,
    display_name: "presenced board".to_string(),
    secrets: Vec::new(),
    roles: Vec::new(),
    scopes: BOARD_SCOPES.iter().map(|s| s.to_string()).collect(),
    redirect_uris: Vec::new(),
    builtin: true,
});

/// A registered application, as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    #[serde(with = "guid_text")]
    pub app: Guid,
    pub display_name: String,
    /// Salted digests of the client secrets.
    secrets: Vec<Digest256>,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// The built-in board client ([`BOARD_APP_ID`]), never written to the registry file.
    #[serde(skip)]
    pub builtin: bool,
}

impl Application {
    /// Whether the authorization endpoint may send a code to `uri`.
    pub fn allows_redirect(&self, uri: &str) -> bool {
        check_redirect_uri(uri).is_ok()
            && self
                .redirect_uris
                .iter()
                .any(|registered| redirect_uri_matches(registered, uri))
    }

    /// Whether `secret` is one of the application's client secrets.
    pub fn has_secret(&self, secret: &str) -> bool {
        self.secrets
            .iter()
            .fold(false, |found, digest| found | digest.matches(secret))
    }

    /// Whether the application has any secret (a confidential client).
    pub fn is_confidential(&self) -> bool {
        !self.secrets.is_empty()
    }
}

/// A user who may sign in with a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PasswordUser {
    #[serde(with = "guid_text")]
    user: Guid,
    password: Digest256,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct TenantRegistrations {
    #[serde(with = "guid_keys")]
    applications: BTreeMap<Guid, Application>,
    /// Keyed by lower-case user principal name.
    users: BTreeMap<String, PasswordUser>,
}

/// Every tenant's registrations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    #[serde(with = "guid_keys")]
    tenants: BTreeMap<Guid, TenantRegistrations>,
}

impl Registry {
    /// Loads the registry of a data directory (empty if there is none yet).
    pub fn load(data_dir: &Path) -> Result<Registry, IdentityError> {
        Ok(Registry::read(&FileCell::new(data_dir.join(REGISTRY_FILE)))?.0)
    }

    /// Writes the registry durably (a temporary file renamed over the old one).
    pub fn save(&self, data_dir: &Path) -> Result<(), IdentityError> {
        FileCell::new(data_dir.join(REGISTRY_FILE)).write(0, &self.to_bytes())?;
        Ok(())
    }

    /// The registry held by `cell` (empty if there is none yet), and its version.
    pub fn read(cell: &dyn StateCell) -> Result<(Registry, u64), IdentityError> {
        let (bytes, version) = cell.read()?;
        let registry = match bytes {
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| IdentityError::KeyFormat {
                    path: cell.location().into(),
                    reason: format!("not a registrations file: {e}"),
                })?
            }
            None => Registry::default(),
        };
        Ok((registry, version))
    }

    /// Applies `change` to the registry in `cell` and writes it back, again
    /// from a fresh read if another writer came first; returns the registry
    /// as written.
    pub fn update(
        cell: &dyn StateCell,
        mut change: impl FnMut(&mut Registry) -> Result<(), IdentityError>,
    ) -> Result<Registry, IdentityError> {
        for _ in 0..crate::state::MAX_ATTEMPTS {
            let (mut registry, version) = Registry::read(cell)?;
            change(&mut registry)?;
            if cell.write(version, &registry.to_bytes())? {
                return Ok(registry);
            }
        }
        Err(IdentityError::Shared {
            location: cell.location(),
            reason: "the registrations kept changing under this write; try again".into(),
        })
    }

    /// The registry as stored (JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("the registry serialises")
    }

    /// Adds or replaces applications of `tenant`, and adds or replaces the
    /// passwords of `(user, user principal name, password)`.
    pub fn merge(
        &mut self,
        tenant: Guid,
        applications: Vec<NewApplication>,
        passwords: Vec<(Guid, String, String)>,
    ) -> Result<(), IdentityError> {
        let registrations = self.tenants.entry(tenant).or_default();
        for new in applications {
            let secrets = new
                .secrets
                .iter()
                .map(|s| Digest256::of(s))
                .collect::<Result<_, _>>()?;
            let application = Application {
                app: new.app,
                display_name: new.display_name,
                secrets,
                roles: new.roles,
                scopes: new.scopes,
                redirect_uris: new.redirect_uris,
                builtin: false,
            };
            registrations.applications.insert(new.app, application);
        }
        for (user, upn, password) in passwords {
            let password = Digest256::of(&password)?;
            registrations
                .users
                .insert(upn.to_lowercase(), PasswordUser { user, password });
        }
        Ok(())
    }

    /// Whether the registry knows `tenant`.
    pub fn has_tenant(&self, tenant: Guid) -> bool {
        self.tenants.contains_key(&tenant)
    }

    /// An application of `tenant`: registered, or the built-in board client ([`BOARD_APP_ID`]).
    pub fn application(&self, tenant: Guid, app: Guid) -> Option<&Application> {
        let registrations = self.tenants.get(&tenant)?;
        registrations
            .applications
            .get(&app)
            .or_else(|| (app == BOARD_APP_ID).then(|| &*BOARD))
    }

    /// The tenants the registry knows.
    pub fn tenants(&self) -> Vec<Guid> {
        self.tenants.keys().copied().collect()
    }

    /// `app` as registered in any tenant (the first), for requests through `common`.
    pub fn any_application(&self, app: Guid) -> Option<&Application> {
        self.tenants
            .values()
            .find_map(|r| r.applications.get(&app))
            .or_else(|| (app == BOARD_APP_ID && !self.tenants.is_empty()).then(|| &*BOARD))
    }

    /// Whether `uri` may be a sign-out's `post_logout_redirect_uri` in `tenant`: registered for
    /// `app`, or for any application of the tenant when the request names none.
    pub fn allows_logout_redirect(&self, tenant: Guid, app: Option<Guid>, uri: &str) -> bool {
        let Some(registrations) = self.tenants.get(&tenant) else {
            return false;
        };
        match app {
            Some(app) => registrations
                .applications
                .get(&app)
                .is_some_and(|a| a.allows_redirect(uri)),
            None => registrations
                .applications
                .values()
                .any(|a| a.allows_redirect(uri)),
        }
    }

    /// The user signing in with `user_principal_name` and `password` in
    /// `tenant`, or `None` — the same for an unknown user and a wrong password.
    pub fn password_user(
        &self,
        tenant: Guid,
        user_principal_name: &str,
        password: &str,
    ) -> Option<Guid> {
        let user = self
            .tenants
            .get(&tenant)?
            .users
            .get(&user_principal_name.to_lowercase())?;
        user.password.matches(password).then_some(user.user)
    }

    /// The tenant whose users include `user_principal_name`, for sign-ins
    /// through `organizations` or `common`.
    pub fn tenant_of_user(&self, user_principal_name: &str) -> Option<Guid> {
        let upn = user_principal_name.to_lowercase();
        self.tenants
            .iter()
            .find(|(_, r)| r.users.contains_key(&upn))
            .map(|(tenant, _)| *tenant)
    }
}

/// Writes `bytes` to `path` (mode 0600) durably: a temporary file synced, then renamed over the old one.
pub(crate) fn write_private_durably(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    fn io(path: &Path) -> impl Fn(std::io::Error) -> IdentityError + '_ {
        move |source| IdentityError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io(path))?;
    }
    let temporary = path.with_extension("json.tmp");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(io(&temporary))?;
        file.write_all(bytes).map_err(io(&temporary))?;
        file.sync_all().map_err(io(&temporary))?;
    }
    fs::rename(&temporary, path).map_err(io(path))
}

/// A salted SHA-256 digest of a secret: `salt` and `digest` in hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Digest256 {
    salt: String,
    digest: String,
}

impl Digest256 {
    fn of(secret: &str) -> Result<Digest256, IdentityError> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| IdentityError::KeyGeneration(e.to_string()))?;
        let salt = hex(&salt);
        let digest = hex(&Self::hash(&salt, secret));
        Ok(Digest256 { salt, digest })
    }

    fn hash(salt: &str, secret: &str) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(salt.as_bytes());
        hash.update(b"\0");
        hash.update(secret.as_bytes());
        hash.finalize().into()
    }

    /// Compares in constant time with respect to the secret's content.
    fn matches(&self, secret: &str) -> bool {
        let candidate = hex(&Self::hash(&self.salt, secret));
        candidate.len() == self.digest.len()
            && candidate
                .bytes()
                .zip(self.digest.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// GUIDs as their text in the registry file (the domain's `Guid` has no serde).
pub(crate) mod guid_text {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::Guid;

    pub fn serialize<S: Serializer>(guid: &Guid, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(guid)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Guid, D::Error> {
        let text = String::deserialize(deserializer)?;
        Guid::parse(&text).ok_or_else(|| D::Error::custom(format!("'{text}' is not a GUID")))
    }
}

/// Maps keyed by GUID, as objects keyed by the GUID's text.
mod guid_keys {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error};

    use crate::Guid;

    pub fn serialize<S: Serializer, V: Serialize>(
        map: &BTreeMap<Guid, V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_map(map.iter().map(|(k, v)| (k.to_string(), v)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, V: Deserialize<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<Guid, V>, D::Error> {
        let text = BTreeMap::<String, V>::deserialize(deserializer)?;
        text.into_iter()
            .map(|(k, v)| {
                Guid::parse(&k)
                    .map(|g| (g, v))
                    .ok_or_else(|| D::Error::custom(format!("'{k}' is not a GUID")))
            })
            .collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: Guid = Guid::from_u128(0x4f5e1d6c_2b3a_4c9d_8e7f_0a1b2c3d4e5f);
    const APP: Guid = Guid::from_u128(0x22553876_f5ab_4529_bffb_cfe50aa89f87);
    const USER: Guid = Guid::from_u128(0xfa8bf3dc_eca7_46b7_bad1_db199b62afc3);

    fn registry() -> Registry {
        let mut registry = Registry::default();
        let app = NewApplication {
            app: APP,
            display_name: "Softphone".into(),
            secrets: vec!["s3cret".into(), "next-secret".into()],
            roles: vec!["Presence.ReadWrite.All".into()],
            scopes: vec!["Presence.ReadWrite".into()],
            redirect_uris: vec![],
        };
        registry
            .merge(
                TENANT,
                vec![app],
                vec![(USER, "Adele@Contoso.com".into(), "pa55".into())],
            )
            .unwrap();
        registry
    }

    #[test]
    fn client_secrets_and_passwords_are_checked_and_never_kept_in_clear() {
        let registry = registry();
        let app = registry.application(TENANT, APP).unwrap();
        assert!(
            app.has_secret("s3cret") && app.has_secret("next-secret") && !app.has_secret("S3cret")
        );
        assert_eq!(
            registry.password_user(TENANT, "adele@contoso.com", "pa55"),
            Some(USER)
        );
        assert_eq!(
            registry.password_user(TENANT, "adele@contoso.com", "wrong"),
            None
        );
        assert_eq!(
            registry.password_user(TENANT, "nobody@contoso.com", "pa55"),
            None
        );
        assert_eq!(registry.tenant_of_user("ADELE@contoso.com"), Some(TENANT));
        let text = serde_json::to_string(&registry).unwrap();
        assert!(!text.contains("s3cret") && !text.contains("pa55"));
    }

    #[test]
    fn redirect_uris_are_https_or_loopback_http_and_match_exactly() {
        for ok in [
            "https://app.example/callback",
            "http://localhost:3000/auth",
            "http://127.0.0.1/cb",
            "http://[::1]:8080/",
        ] {
            assert_eq!(check_redirect_uri(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://app.example/cb",
            "https://app.example/cb#x",
            "javascript:alert(1)",
            "https://a\"b/",
            "https:///cb",
            "ftp://app.example/",
            "/relative",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
        let app = Application {
            app: APP,
            display_name: String::new(),
            secrets: vec![],
            roles: vec![],
            scopes: vec![],
            redirect_uris: vec![
                "https://app.example/cb".into(),
                "http://localhost:3000/auth".into(),
            ],
            builtin: false,
        };
        assert!(app.allows_redirect("https://APP.example/cb"));
        assert!(app.allows_redirect("http://localhost:51234/auth"));
        assert!(!app.allows_redirect("http://127.0.0.1:3000/auth"));
        assert!(!app.allows_redirect("https://app.example/cb/x"));
        assert!(!app.allows_redirect("https://app.example/cb?x=1"));
        assert!(!app.allows_redirect("https://app.example.evil/cb"));
        assert!(!app.allows_redirect("http://app.example/cb"));
    }

    #[test]
    fn every_known_tenant_has_the_board_client_unless_it_registers_that_id() {
        let mut registry = registry();
        let board = registry.application(TENANT, BOARD_APP_ID).unwrap();
        assert!(board.builtin && !board.is_confidential());
        assert_eq!(board.scopes, BOARD_SCOPES);
        // Its redirect URI is decided per request, never by registration.
        assert!(!board.allows_redirect("http://localhost/"));
        assert!(registry.any_application(BOARD_APP_ID).is_some());
        assert!(
            registry
                .application(Guid::from_u128(7), BOARD_APP_ID)
                .is_none()
        );
        assert!(Registry::default().any_application(BOARD_APP_ID).is_none());
        registry
            .merge(
                TENANT,
                vec![NewApplication {
                    app: BOARD_APP_ID,
                    display_name: "Our board".into(),
                    secrets: vec![],
                    roles: vec![],
                    scopes: vec!["Presence.Read".into()],
                    redirect_uris: vec!["https://board.example/".into()],
                }],
                vec![],
            )
            .unwrap();
        let ours = registry.application(TENANT, BOARD_APP_ID).unwrap();
        assert!(!ours.builtin && ours.allows_redirect("https://board.example/"));
    }

    #[test]
    fn the_registry_survives_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Registry::load(dir.path()).unwrap(), Registry::default());
        let registry = registry();
        registry.save(dir.path()).unwrap();
        let loaded = Registry::load(dir.path()).unwrap();
        assert_eq!(loaded, registry);
        assert!(
            loaded
                .application(TENANT, APP)
                .unwrap()
                .has_secret("s3cret")
        );
    }

    #[test]
    fn merging_again_replaces_an_application_and_keeps_the_others() {
        let mut registry = registry();
        let other = Guid::from_u128(7);
        let replacement = NewApplication {
            app: APP,
            display_name: "Softphone 2".into(),
            secrets: vec!["rotated".into()],
            roles: vec![],
            scopes: vec![],
            redirect_uris: vec![],
        };
        let added = NewApplication {
            app: other,
            ..replacement.clone()
        };
        registry
            .merge(TENANT, vec![replacement, added], vec![])
            .unwrap();
        let app = registry.application(TENANT, APP).unwrap();
        assert!(app.has_secret("rotated") && !app.has_secret("s3cret"));
        assert!(registry.application(TENANT, other).is_some());
        assert_eq!(
            registry.password_user(TENANT, "adele@contoso.com", "pa55"),
            Some(USER)
        );
    }
}
