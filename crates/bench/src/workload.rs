//! What the scenarios send: a tenant of N users, a pool of apps with valid
//! tokens, and the Graph requests of each scenario.
//!
//! Requests are varied the way real clients vary them: a random user, a
//! random app's token (each app's setPresence session is its own, so users
//! collect sessions from several apps), every allowed (availability,
//! activity) pair and a spread of expirations. Each request is written
//! straight into the load generator's buffer.

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use jiff::{SignedDuration, Timestamp};
use presenced_domain::Guid;
use presenced_identity::{DevIssuerKey, Subject, TokenRequest};

use crate::load::{Rng, Workload};

pub const TENANT: &str = "b3a1c2d4-0e5f-4a6b-8c7d-9e0f1a2b3c4d";
/// Apps in the tenant, each with its own token: softphones, a contact-centre
/// platform, dashboards, busy lights, calendar bridges.
pub const APPS: usize = 16;
/// Ids per getPresencesByUserId in the `bulk` scenario (Graph's maximum).
pub const BULK_IDS: usize = 650;

/// The user ids of the generated directory.
pub fn user_id(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

fn app_id(n: usize) -> String {
    format!("c4b2d3e5-1f60-4b7c-9d8e-{n:012}")
}

/// setPresence's allowed pairs.
const SESSION_PAIRS: [(&str, &str); 5] = [
    ("Available", "Available"),
    ("Busy", "InACall"),
    ("Busy", "InAConferenceCall"),
    ("Away", "Away"),
    ("DoNotDisturb", "Presenting"),
];
const SESSION_EXPIRATIONS: [&str; 5] = ["PT5M", "PT15M", "PT1H", "PT2H30M", "PT4H"];
/// setUserPreferredPresence's allowed pairs.
const PREFERRED_PAIRS: [(&str, &str); 6] = [
    ("Available", "Available"),
    ("Busy", "Busy"),
    ("DoNotDisturb", "DoNotDisturb"),
    ("BeRightBack", "BeRightBack"),
    ("Away", "Away"),
    ("Offline", "OffWork"),
];
const PREFERRED_EXPIRATIONS: [Option<&str>; 4] = [None, Some("PT1H"), Some("PT8H"), Some("P1D")];

/// The tenant, its users and its apps' tokens; `host` is the server's
/// address as the `Host` header gives it.
#[derive(Clone)]
pub struct Fleet {
    pub users: usize,
    host: String,
    /// (app id, bearer token)
    apps: Vec<(String, String)>,
}

impl Fleet {
    /// Writes the directory file for `users` users and `APPS` apps.
    pub fn write_directory(path: &Path, users: usize) -> anyhow::Result<()> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        write!(
            out,
            r#"{{"tenants":[{{"id":"{TENANT}","displayName":"Benchmark","applications":["#
        )?;
        for n in 0..APPS {
            let comma = if n == 0 { "" } else { "," };
            write!(
                out,
                r#"{comma}{{"appId":"{}","displayName":"App {n}","secrets":["secret-{n}"],"roles":["Presence.Read.All","Presence.ReadWrite.All"]}}"#,
                app_id(n)
            )?;
        }
        write!(out, r#"],"users":["#)?;
        for n in 0..users {
            let comma = if n == 0 { "" } else { "," };
            write!(
                out,
                r#"{comma}{{"id":"{}","userPrincipalName":"agent{n}@bench.example","displayName":"Agent {n}"}}"#,
                user_id(n)
            )?;
        }
        write!(out, "]}}]}}")?;
        out.flush()?;
        Ok(())
    }

    /// Tokens for every app, signed with the data directory's development
    /// key (created now if the directory has none, then used by presenced).
    pub fn new(data_dir: &Path, users: usize) -> anyhow::Result<Fleet> {
        let key = DevIssuerKey::load_or_create(data_dir).context("signing key")?;
        let tenant = Guid::parse(TENANT).context("tenant id")?;
        let apps = (0..APPS)
            .map(|n| {
                let id = app_id(n);
                let token = key.mint(
                    &TokenRequest {
                        tenant,
                        app: Guid::parse(&id).context("app id")?,
                        subject: Subject::Application {
                            roles: vec![
                                "Presence.Read.All".into(),
                                "Presence.ReadWrite.All".into(),
                            ],
                        },
                        lifetime: SignedDuration::from_hours(12),
                    },
                    Timestamp::now(),
                )?;
                Ok((id, token))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Fleet {
            users,
            host: String::new(),
            apps,
        })
    }

    /// Tokens for every app from `mint(app id)` (e.g. `presenced token
    /// --store redis`, whose signing key lives in the cluster).
    pub fn minted(
        users: usize,
        mut mint: impl FnMut(&str) -> anyhow::Result<String>,
    ) -> anyhow::Result<Fleet> {
        let apps = (0..APPS)
            .map(|n| {
                let id = app_id(n);
                let token = mint(&id)?;
                Ok((id, token))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Fleet {
            users,
            host: String::new(),
            apps,
        })
    }

    /// The server the requests go to, for the `Host` header.
    pub fn aimed_at(mut self, address: std::net::SocketAddr) -> Fleet {
        self.host = address.to_string();
        self
    }

    fn head(&self, out: &mut Vec<u8>, method: &str, path: &str, app: usize) {
        let _ = write!(
            out,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nAccept: application/json\r\nUser-Agent: presenced-bench\r\n",
            self.host, self.apps[app].1
        );
    }

    fn get(&self, out: &mut Vec<u8>, user: usize, app: usize) {
        self.head(
            out,
            "GET",
            &format!("/v1.0/users/{}/presence", user_id(user)),
            app,
        );
        out.extend_from_slice(b"\r\n");
    }

    fn post(&self, out: &mut Vec<u8>, path: &str, app: usize, body: &[u8]) {
        self.head(out, "POST", path, app);
        let _ = write!(
            out,
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        out.extend_from_slice(body);
    }

    fn set_presence(
        &self,
        out: &mut Vec<u8>,
        user: usize,
        app: usize,
        pair: (&str, &str),
        expiration: &str,
    ) {
        let body = format!(
            r#"{{"sessionId":"{}","availability":"{}","activity":"{}","expirationDuration":"{expiration}"}}"#,
            self.apps[app].0, pair.0, pair.1
        );
        let path = format!("/v1.0/users/{}/presence/setPresence", user_id(user));
        self.post(out, &path, app, body.as_bytes());
    }

    fn set_preferred(
        &self,
        out: &mut Vec<u8>,
        user: usize,
        app: usize,
        pair: (&str, &str),
        expiration: Option<&str>,
    ) {
        let body = match expiration {
            Some(expiration) => format!(
                r#"{{"availability":"{}","activity":"{}","expirationDuration":"{expiration}"}}"#,
                pair.0, pair.1
            ),
            None => format!(r#"{{"availability":"{}","activity":"{}"}}"#, pair.0, pair.1),
        };
        let path = format!(
            "/v1.0/users/{}/presence/setUserPreferredPresence",
            user_id(user)
        );
        self.post(out, &path, app, body.as_bytes());
    }

    fn bulk(&self, out: &mut Vec<u8>, rng: &mut Rng, ids: usize, app: usize) {
        let mut body = Vec::with_capacity(16 + ids * 39);
        body.extend_from_slice(br#"{"ids":["#);
        for n in 0..ids {
            if n > 0 {
                body.push(b',');
            }
            let _ = write!(body, "\"{}\"", user_id(rng.below(self.users)));
        }
        body.extend_from_slice(b"]}");
        self.post(out, "/v1.0/communications/getPresencesByUserId", app, &body);
    }
}

/// `get`: GET the presence of a random user.
pub struct Get(pub Fleet);

impl Workload for Get {
    fn next(&self, rng: &mut Rng, out: &mut Vec<u8>) -> Option<usize> {
        let (user, app) = (rng.below(self.0.users), rng.below(APPS));
        self.0.get(out, user, app);
        Some(0)
    }

    fn kinds(&self) -> &[&'static str] {
        &["get"]
    }
}

/// `set`: three in four a setPresence (any allowed pair and expiration, the
/// calling app's session), one in four a setUserPreferredPresence.
pub struct Set(pub Fleet);

impl Workload for Set {
    fn next(&self, rng: &mut Rng, out: &mut Vec<u8>) -> Option<usize> {
        let (user, app) = (rng.below(self.0.users), rng.below(APPS));
        if rng.below(4) < 3 {
            let pair = *rng.pick(&SESSION_PAIRS);
            let expiration = SESSION_EXPIRATIONS[rng.below(SESSION_EXPIRATIONS.len())];
            self.0.set_presence(out, user, app, pair, expiration);
            Some(0)
        } else {
            let pair = *rng.pick(&PREFERRED_PAIRS);
            self.0
                .set_preferred(out, user, app, pair, *rng.pick(&PREFERRED_EXPIRATIONS));
            Some(1)
        }
    }

    fn kinds(&self) -> &[&'static str] {
        &["setPresence", "setUserPreferredPresence"]
    }
}

/// `bulk`: getPresencesByUserId for `BULK_IDS` random users.
pub struct Bulk(pub Fleet);

impl Workload for Bulk {
    fn next(&self, rng: &mut Rng, out: &mut Vec<u8>) -> Option<usize> {
        let app = rng.below(APPS);
        self.0.bulk(out, rng, BULK_IDS, app);
        Some(0)
    }

    fn kinds(&self) -> &[&'static str] {
        &["getPresencesByUserId"]
    }
}

/// `mixed`: a day in a contact centre, as request shares.
///
/// Per agent and per 4 minutes: the softphone refreshes its session once
/// (setPresence, PT5M, the state it already shows); calls change the state
/// 1.3 times (about 10 calls an hour, each going InACall then back to
/// Available); one agent in 40 takes a break or comes back
/// (setUserPreferredPresence). Each supervisor watches a team of 15 and
/// their dashboard polls getPresencesByUserId for the team every 15 s (16
/// polls per 4 minutes per 15 agents: 1.07 per agent), and contact cards
/// and busy lights read single presences (0.2 per agent).
pub struct Mixed(pub Fleet);

/// Team size of a supervisor's dashboard.
pub const TEAM: usize = 15;
/// Shares per 1000 requests: refresh, call change, break, dashboard, card.
const MIXED_SHARES: [usize; 5] = [255, 340, 7, 347, 51];

impl Workload for Mixed {
    fn next(&self, rng: &mut Rng, out: &mut Vec<u8>) -> Option<usize> {
        let fleet = &self.0;
        let user = rng.below(fleet.users);
        // Agents' softphones are one app per agent group; the platform app
        // drives the dashboards.
        let app = user % APPS;
        let mut roll = rng.below(MIXED_SHARES.iter().sum());
        let mut kind = 0;
        while roll >= MIXED_SHARES[kind] {
            roll -= MIXED_SHARES[kind];
            kind += 1;
        }
        match kind {
            0 => fleet.set_presence(out, user, app, SESSION_PAIRS[0], "PT5M"),
            1 => {
                let pair = if rng.below(2) == 0 {
                    SESSION_PAIRS[1]
                } else {
                    SESSION_PAIRS[0]
                };
                fleet.set_presence(out, user, app, pair, "PT5M");
            }
            2 => {
                let pair = if rng.below(2) == 0 {
                    PREFERRED_PAIRS[3]
                } else {
                    PREFERRED_PAIRS[0]
                };
                fleet.set_preferred(out, user, app, pair, Some("PT1H"));
            }
            3 => {
                // A team is 15 consecutive agents.
                let first = (user / TEAM) * TEAM;
                let mut body = Vec::with_capacity(16 + TEAM * 39);
                body.extend_from_slice(br#"{"ids":["#);
                for n in first..(first + TEAM).min(fleet.users) {
                    if n > first {
                        body.push(b',');
                    }
                    let _ = write!(body, "\"{}\"", user_id(n));
                }
                body.extend_from_slice(b"]}");
                fleet.post(
                    out,
                    "/v1.0/communications/getPresencesByUserId",
                    APPS - 1,
                    &body,
                );
            }
            _ => fleet.get(out, user, rng.below(APPS)),
        }
        Some(kind)
    }

    fn kinds(&self) -> &[&'static str] {
        &[
            "session refresh",
            "call state",
            "break",
            "team dashboard",
            "single read",
        ]
    }
}

/// Loading: every user once gets a session (from one of the apps, any
/// allowed pair, PT4H) and a preferred presence — two requests per user,
/// then the workload is exhausted.
pub struct Load {
    pub fleet: Fleet,
    next: AtomicUsize,
}

impl Load {
    pub fn new(fleet: Fleet) -> Load {
        Load {
            fleet,
            next: AtomicUsize::new(0),
        }
    }
}

impl Workload for Load {
    fn next(&self, _: &mut Rng, out: &mut Vec<u8>) -> Option<usize> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let (user, second) = (n / 2, n % 2 == 1);
        if user >= self.fleet.users {
            return None;
        }
        let app = user % APPS;
        if second {
            let pair = PREFERRED_PAIRS[user % PREFERRED_PAIRS.len()];
            self.fleet.set_preferred(out, user, app, pair, Some("P1D"));
            Some(1)
        } else {
            let pair = SESSION_PAIRS[user % SESSION_PAIRS.len()];
            self.fleet.set_presence(out, user, app, pair, "PT4H");
            Some(0)
        }
    }

    fn kinds(&self) -> &[&'static str] {
        &["setPresence", "setUserPreferredPresence"]
    }
}
