//! The built-in identity provider, shaped like Microsoft Entra ID's v2
//! endpoints, so that `azure-identity`, MSAL and other OAuth2 clients get
//! tokens from presenced as they would from Entra:
//!
//! - `GET /{tenant}/v2.0/.well-known/openid-configuration`
//! - `GET /{tenant}/discovery/v2.0/keys`
//! - `POST /{tenant}/oauth2/v2.0/token` with `client_credentials` (an app
//!   registration's secret; `scope=<resource>/.default` gets the granted
//!   application permissions) or `password` (a test user's password; the
//!   requested delegated scopes, among those the app may ask for).
//!
//! Tokens are signed with the development issuer's key, so presenced's own
//! validator accepts them. Errors use OAuth2's format (`error`,
//! `error_description` with Entra's AADSTS codes), never Graph's envelope,
//! and say no more than Entra does: a wrong password and an unknown user
//! read the same.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jiff::{SignedDuration, Timestamp};
use presenced_domain::Guid;
use presenced_identity::grants::{Grant, IdTokenClaims, Refresh, pkce_matches};
use presenced_identity::{GRAPH_APP_ID, GRAPH_AUDIENCE, Subject, TokenRequest, issuer_at};
use serde::Serialize;

pub mod authorize;
pub mod discovery;

pub use authorize::{authorize_page, authorize_submit, logout};

pub use discovery::{instance_discovery, keys, openid_configuration, user_realm};

use super::presence::read_body;
use super::{AppState, RouteName};

/// How long issued access tokens live, as Entra's default.
const TOKEN_LIFETIME: SignedDuration = SignedDuration::from_secs(3600);

/// Scopes that ask for OpenID Connect artefacts rather than permissions.
const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "offline_access", "email"];

/// An OAuth2 error answer.
#[derive(Debug)]
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    description: String,
}

impl OAuthError {
    fn new(error: &'static str, code: u32, description: impl Into<String>) -> OAuthError {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            error,
            code,
            description: description.into(),
        }
    }

    fn unknown_tenant(tenant: &str) -> OAuthError {
        OAuthError::new(
            "invalid_tenant",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        )
    }

    fn render(self, request_id: &str) -> Response {
        let body = serde_json::json!({
            "error": self.error,
            "error_description": format!("AADSTS{}: {}", self.code, self.description),
            "error_codes": [self.code],
            "timestamp": Timestamp::now().strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
            "trace_id": request_id,
            "correlation_id": request_id,
        });
        json(self.status, &body)
    }
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let mut response = (status, serde_json::to_vec(body).unwrap_or_default()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    response
}

fn route(mut response: Response, name: &'static str) -> Response {
    response.extensions_mut().insert(RouteName(name));
    response
}

/// The origin the identity provider names its issuer and endpoints under: the configured public URL, or
/// the scheme and authority the request came to. A `Host` that is not a plain authority is refused, so
/// nothing a client sends reaches a discovery document or a token.
fn issuer_base(state: &AppState, parts: &axum::http::request::Parts) -> Result<String, OAuthError> {
    if let Some(url) = &state.public_url {
        return Ok(url.0.to_string());
    }
    let base = super::base_url(parts).to_ascii_lowercase();
    if presenced_identity::is_origin(&base) {
        Ok(base)
    } else {
        Err(OAuthError::new(
            "invalid_request",
            90023,
            "The request's Host is not a valid host name and port.",
        ))
    }
}

fn known_tenant(state: &AppState, tenant: &str) -> Result<Guid, OAuthError> {
    Guid::parse(tenant)
        .filter(|t| state.registry.has_tenant(*t))
        .ok_or_else(|| OAuthError::unknown_tenant(tenant))
}

/// `POST /{tenant}/oauth2/v2.0/token`.
#[utoipa::path(post, path = "/{tenant}/oauth2/v2.0/token", tag = "identity",
    params(("tenant" = String, Path, description = "A tenant id, `common`, `organizations` or `consumers`.")),
    request_body(content = crate::api::openapi::TokenFormDoc, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The tokens.", content_type = "application/json", body = crate::api::openapi::TokenResponseDoc),
        (status = 400, description = "OAuth2 error.", content_type = "application/json", body = crate::api::openapi::OAuthErrorDoc),
        (status = 401, description = "Bad client credentials (`invalid_client`).", content_type = "application/json", body = crate::api::openapi::OAuthErrorDoc)))]
pub async fn token(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    request: Request,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let response = match issue(&state, &tenant, request).await {
        Ok(response) => response,
        Err(e) => e.render(&request_id),
    };
    route(response, "/{tenant}/oauth2/v2.0/token")
}

#[derive(Serialize)]
struct TokenResponse {
    token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    expires_in: i64,
    ext_expires_in: i64,
    access_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token_expires_in: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_info: Option<String>,
}

/// Refresh tokens of single-page apps (token requests from a browser, which sends `Origin`): 24 hours
/// from sign-in, not extended by rotation, as Entra's.
const SPA_REFRESH_LIFETIME: SignedDuration = SignedDuration::from_hours(24);
/// Other clients' refresh tokens: 90 days, renewed by each rotation, as Entra's.
const REFRESH_LIFETIME: SignedDuration = SignedDuration::from_hours(90 * 24);

async fn issue(state: &AppState, tenant: &str, request: Request) -> Result<Response, OAuthError> {
    let (parts, body) = request.into_parts();
    let body = read_body(&parts.headers, body).await.map_err(|_| {
        OAuthError::new("invalid_request", 900144, "The request body is too large.")
    })?;
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).map_err(|_| {
        OAuthError::new(
            "invalid_request",
            900144,
            "The request body must be application/x-www-form-urlencoded.",
        )
    })?;
    let field = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let missing = |name: &str| {
        OAuthError::new(
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{name}'."),
        )
    };
    let (basic_id, basic_secret) = basic_credentials(&parts.headers);
    let client_id = field("client_id")
        .map(str::to_string)
        .or(basic_id)
        .ok_or_else(|| missing("client_id"))?;
    let secret = field("client_secret").map(str::to_string).or(basic_secret);
    let grant = field("grant_type").ok_or_else(|| missing("grant_type"))?;
    let scope = match grant {
        // The scope of a code or refresh token is the one granted at sign-in.
        "authorization_code" | "refresh_token" => field("scope").unwrap_or(""),
        _ => field("scope").ok_or_else(|| missing("scope"))?,
    };
    let base = issuer_base(state, &parts)?;
    let now = Timestamp::now();
    let spa = parts.headers.contains_key(header::ORIGIN);

    // Codes and refresh tokens name their tenant: `common`/`organizations` are resolved by them.
    let code = match grant {
        "authorization_code" => {
            let text = field("code").ok_or_else(|| missing("code"))?;
            let codes = state.codes.clone();
            let text = text.to_string();
            let redeemed = if codes.is_shared() {
                tokio::task::spawn_blocking(move || codes.redeem(&text, now))
                    .await
                    .map_err(server_error)?
            } else {
                codes.redeem(&text, now)
            };
            Some(redeemed.map_err(server_error)?.ok_or_else(expired_grant)?)
        }
        _ => None,
    };
    let multi = ["organizations", "common"].contains(&tenant.to_ascii_lowercase().as_str());
    let tenant_id = match (Guid::parse(tenant), grant, field("username"), &code) {
        (Some(t), _, _, _) => Some(t),
        (None, _, _, Some(code)) if multi => Some(code.grant.tenant),
        (None, "password", Some(username), _) if multi => state.registry.tenant_of_user(username),
        _ => None,
    }
    .filter(|t| state.registry.has_tenant(*t))
    .ok_or_else(|| OAuthError::unknown_tenant(tenant))?;

    let unknown_client = || {
        OAuthError::new(
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant_id}'."
            ),
        )
    };
    let app_id = Guid::parse(&client_id).ok_or_else(unknown_client)?;
    let app = state
        .registry
        .application(tenant_id, app_id)
        .ok_or_else(unknown_client)?;
    let bad_secret = || OAuthError {
        status: StatusCode::UNAUTHORIZED,
        ..OAuthError::new(
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value.",
        )
    };
    // A secret, when sent, must be right; confidential clients must send one for delegated grants
    // that prove no password (a code or a refresh token), as Entra requires.
    if let Some(secret) = &secret
        && !app.has_secret(secret)
    {
        return Err(bad_secret());
    }
    let secret_missing = || OAuthError {
        status: StatusCode::UNAUTHORIZED,
        ..OAuthError::new(
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )
    };

    match grant {
        "client_credentials" => {
            if secret.is_none() {
                return Err(bad_secret());
            }
            if !is_default_scope(scope) {
                return Err(OAuthError::new(
                    "invalid_scope",
                    1002012,
                    format!(
                        "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                    ),
                ));
            }
            let request = TokenRequest {
                tenant: tenant_id,
                app: app_id,
                subject: Subject::Application {
                    roles: app.roles.clone(),
                },
                lifetime: TOKEN_LIFETIME,
            };
            let access_token = state
                .issuer_key
                .mint_issued_by(&request, &issuer_at(&base, tenant_id), now)
                .map_err(server_error)?;
            let lifetime = TOKEN_LIFETIME.as_secs() - 1;
            Ok(json(
                StatusCode::OK,
                &TokenResponse {
                    token_type: "Bearer",
                    scope: None,
                    expires_in: lifetime,
                    ext_expires_in: lifetime,
                    access_token,
                    refresh_token: None,
                    refresh_token_expires_in: None,
                    id_token: None,
                    client_info: None,
                },
            ))
        }
        "password" => {
            let (username, password) = (
                field("username").unwrap_or(""),
                field("password").unwrap_or(""),
            );
            let user = state
                .registry
                .password_user(tenant_id, username, password)
                .ok_or_else(|| {
                    OAuthError::new(
                        "invalid_grant",
                        50126,
                        "Error validating credentials due to invalid username or password.",
                    )
                })?;
            let grant = Grant {
                tenant: tenant_id,
                app: app_id,
                user,
                scopes: delegated_scopes(scope, &app.scopes)?,
                oidc: oidc_scopes(scope),
            };
            // The password grant has always answered an id token: kept for the clients that read it.
            delegated_answer(state, &base, &grant, None, true, None, spa, now).await
        }
        "authorization_code" => {
            let code = code.expect("redeemed above");
            if code.grant.tenant != tenant_id || code.grant.app != app_id {
                return Err(expired_grant());
            }
            if app.is_confidential() && secret.is_none() {
                return Err(secret_missing());
            }
            if field("redirect_uri") != Some(code.redirect_uri.as_str()) {
                return Err(OAuthError::new(
                    "invalid_grant",
                    500112,
                    "The reply address does not match the reply address provided when requesting the authorization code.",
                ));
            }
            if let Some(challenge) = &code.code_challenge {
                let verifier = field("code_verifier").unwrap_or("");
                if !pkce_matches(challenge, verifier) {
                    return Err(OAuthError::new(
                        "invalid_grant",
                        501481,
                        "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                    ));
                }
            }
            let id_token = code.grant.asked("openid");
            delegated_answer(
                state,
                &base,
                &code.grant,
                code.nonce.as_deref(),
                id_token,
                None,
                spa,
                now,
            )
            .await
        }
        "refresh_token" => {
            if app.is_confidential() && secret.is_none() {
                return Err(secret_missing());
            }
            let text = field("refresh_token")
                .ok_or_else(|| missing("refresh_token"))?
                .to_string();
            let lifetime = if spa {
                SPA_REFRESH_LIFETIME
            } else {
                REFRESH_LIFETIME
            };
            let refresh = state.refresh_tokens.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                refresh.redeem(&text, tenant_id, app_id, lifetime, now)
            })
            .await
            .map_err(server_error)?
            .map_err(server_error)?;
            let (mut grant, rotated) = match outcome {
                Refresh::Rotated {
                    grant,
                    refresh_token,
                } => (grant, refresh_token),
                Refresh::Invalid => return Err(expired_grant()),
                Refresh::Reused => {
                    return Err(OAuthError::new(
                        "invalid_grant",
                        54005,
                        "The refresh token has already been used; every token of its sign-in is now revoked. Sign in again.",
                    ));
                }
            };
            // A narrower (or other consented) set of scopes may be asked for.
            if scope.split_whitespace().any(|w| !is_oidc_scope(w)) {
                grant.scopes = delegated_scopes(scope, &app.scopes)?;
            }
            let id_token = grant.asked("openid");
            delegated_answer(
                state,
                &base,
                &grant,
                None,
                id_token,
                Some(rotated),
                spa,
                now,
            )
            .await
        }
        other => Err(OAuthError::new(
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{other}'."),
        )),
    }
}

fn expired_grant() -> OAuthError {
    OAuthError::new(
        "invalid_grant",
        70008,
        "The provided authorization code or refresh token has expired, was already redeemed or is not valid for this client. Send a new interactive authorization request.",
    )
}

/// The answer to a delegated grant: an access token for `grant`, an id token when asked, a refresh
/// token when `offline_access` was asked (`rotated`, or a new family), and MSAL's `client_info`.
#[allow(clippy::too_many_arguments)]
async fn delegated_answer(
    state: &AppState,
    base: &str,
    grant: &Grant,
    nonce: Option<&str>,
    id_token: bool,
    rotated: Option<String>,
    spa: bool,
    now: Timestamp,
) -> Result<Response, OAuthError> {
    let issuer = issuer_at(base, grant.tenant);
    let request = TokenRequest {
        tenant: grant.tenant,
        app: grant.app,
        subject: Subject::Delegated {
            user: grant.user,
            scopes: grant.scopes.clone(),
        },
        lifetime: TOKEN_LIFETIME,
    };
    let access_token = state
        .issuer_key
        .mint_issued_by(&request, &issuer, now)
        .map_err(server_error)?;
    let id_token = if id_token {
        let directory_user = state
            .store
            .user(presenced_store::UserKey {
                tenant: grant.tenant,
                user: grant.user,
            })
            .await
            .ok()
            .flatten();
        let upn = directory_user
            .as_ref()
            .map_or("", |u| u.user_principal_name.as_str());
        let name = directory_user
            .as_ref()
            .map_or(upn, |u| u.display_name.as_str());
        let claims = IdTokenClaims {
            aud: grant.app.to_string(),
            iss: issuer.clone(),
            iat: now.as_second(),
            nbf: now.as_second(),
            exp: now.as_second() + TOKEN_LIFETIME.as_secs(),
            name,
            nonce,
            oid: grant.user.to_string(),
            preferred_username: upn,
            sub: grant.user.to_string(),
            tid: grant.tenant.to_string(),
            ver: "2.0",
        };
        Some(state.issuer_key.id_token(&claims).map_err(server_error)?)
    } else {
        None
    };
    let (refresh_token, refresh_expires) = match rotated {
        Some(token) => (Some(token), None),
        None if grant.asked("offline_access") => {
            let (lifetime, fixed) = if spa {
                (SPA_REFRESH_LIFETIME, true)
            } else {
                (REFRESH_LIFETIME, false)
            };
            let refresh = state.refresh_tokens.clone();
            let owned = grant.clone();
            let token =
                tokio::task::spawn_blocking(move || refresh.issue(owned, lifetime, fixed, now))
                    .await
                    .map_err(server_error)?
                    .map_err(server_error)?;
            (Some(token), Some(lifetime.as_secs()))
        }
        None => (None, None),
    };
    let client_info = client_info(grant.user, grant.tenant);
    let scope = &grant.scopes;
    let lifetime = TOKEN_LIFETIME.as_secs() - 1;
    Ok(json(
        StatusCode::OK,
        &TokenResponse {
            token_type: "Bearer",
            scope: Some(scope.join(" ")),
            expires_in: lifetime,
            ext_expires_in: lifetime,
            access_token,
            refresh_token,
            refresh_token_expires_in: refresh_expires,
            id_token,
            client_info: Some(client_info),
        },
    ))
}

/// MSAL's `client_info`: base64url JSON naming the user and their tenant.
fn client_info(user: Guid, tenant: Guid) -> String {
    URL_SAFE_NO_PAD.encode(
        serde_json::json!({"uid": user.to_string(), "utid": tenant.to_string()}).to_string(),
    )
}

fn is_oidc_scope(word: &str) -> bool {
    OIDC_SCOPES.iter().any(|s| s.eq_ignore_ascii_case(word))
}

/// The OpenID Connect scopes among `scope`, lower-case, once each.
fn oidc_scopes(scope: &str) -> Vec<String> {
    let mut found: Vec<String> = scope
        .split_whitespace()
        .filter(|w| is_oidc_scope(w))
        .map(str::to_ascii_lowercase)
        .collect();
    found.sort();
    found.dedup();
    found
}

fn server_error(error: impl std::fmt::Display) -> OAuthError {
    tracing::error!(%error, "could not sign a token");
    OAuthError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        ..OAuthError::new(
            "server_error",
            90100,
            "An error occurred while issuing the token.",
        )
    }
}

/// `client_secret_basic`: `Authorization: Basic base64(id:secret)`, each part form-encoded.
fn basic_credentials(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let decoded = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|v| STANDARD.decode(v.trim()).ok())
        .and_then(|v| String::from_utf8(v).ok());
    let Some(decoded) = decoded else {
        return (None, None);
    };
    let Some((id, secret)) = decoded.split_once(':') else {
        return (None, None);
    };
    let unescape = |s: &str| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
            .ok()
            .and_then(|mut v| v.pop())
            .map(|(_, v)| v)
    };
    (unescape(id), unescape(secret))
}

/// Whether `scope` names Graph's (or presenced's) resource with `/.default`.
fn is_default_scope(scope: &str) -> bool {
    let mut words = scope.split_whitespace();
    let (Some(only), None) = (words.next(), words.next()) else {
        return false;
    };
    let Some(resource) = only.strip_suffix("/.default") else {
        return false;
    };
    let resource = resource.trim_end_matches('/');
    resource.eq_ignore_ascii_case(GRAPH_AUDIENCE) || resource.eq_ignore_ascii_case(GRAPH_APP_ID)
}

/// The delegated scopes a password grant asks for, each one the app may ask for.
fn delegated_scopes(scope: &str, allowed: &[String]) -> Result<Vec<String>, OAuthError> {
    let mut scopes = Vec::new();
    for word in scope.split_whitespace() {
        if is_oidc_scope(word) {
            continue;
        }
        let name = [GRAPH_AUDIENCE, GRAPH_APP_ID]
            .iter()
            .find_map(|r| {
                word.get(..r.len())
                    .filter(|p| p.eq_ignore_ascii_case(r))
                    .map(|_| &word[r.len()..])
            })
            .map_or(word, |rest| rest.trim_start_matches('/'));
        if name == ".default" {
            scopes.extend(allowed.iter().cloned());
            continue;
        }
        let Some(granted) = allowed.iter().find(|a| a.eq_ignore_ascii_case(name)) else {
            return Err(OAuthError::new(
                "invalid_grant",
                65001,
                format!(
                    "The user or administrator has not consented to use the application with scope '{name}'."
                ),
            ));
        };
        scopes.push(granted.clone());
    }
    scopes.dedup();
    if scopes.is_empty() {
        return Err(OAuthError::new(
            "invalid_scope",
            70011,
            "The provided request must include a permission scope.",
        ));
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_scopes_name_graphs_resource() {
        for ok in [
            "https://graph.microsoft.com/.default",
            "https://graph.microsoft.com//.default",
            "00000003-0000-0000-c000-000000000000/.default",
        ] {
            assert!(is_default_scope(ok), "{ok}");
        }
        for bad in [
            "Presence.Read.All",
            "https://graph.microsoft.com/Presence.Read",
            "https://other/.default",
            "",
        ] {
            assert!(!is_default_scope(bad), "{bad}");
        }
    }

    #[test]
    fn delegated_scopes_drop_oidc_scopes_and_strip_the_resource() {
        let allowed = vec![
            "Presence.Read".to_string(),
            "Presence.ReadWrite".to_string(),
        ];
        let got = delegated_scopes("openid profile offline_access https://graph.microsoft.com/presence.read Presence.ReadWrite", &allowed).unwrap();
        assert_eq!(got, ["Presence.Read", "Presence.ReadWrite"]);
        assert_eq!(
            delegated_scopes("https://graph.microsoft.com/.default", &allowed).unwrap(),
            allowed
        );
        assert_eq!(
            delegated_scopes("Presence.Read.All", &allowed)
                .unwrap_err()
                .error,
            "invalid_grant"
        );
        assert_eq!(
            delegated_scopes("openid", &allowed).unwrap_err().error,
            "invalid_scope"
        );
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let mut headers = HeaderMap::new();
        let value = format!("Basic {}", STANDARD.encode("my%20app:s%3Acret"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&value).unwrap(),
        );
        assert_eq!(
            basic_credentials(&headers),
            (Some("my app".into()), Some("s:cret".into()))
        );
    }
}
