//! The authorization endpoint (`GET`/`POST /{tenant}/oauth2/v2.0/authorize`): a plain sign-in page for
//! the directory's test users, then a redirect carrying a single-use code (RFC 6749 §4.1, PKCE
//! RFC 7636); and the sign-out endpoint (`/{tenant}/oauth2/v2.0/logout`).
//!
//! Until the client and its redirect URI are known to be registered, errors are shown on a page (a
//! redirect would hand them to whoever asked); after that they go back to the redirect URI as
//! `error`, `error_description` and `state`, as Entra does.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use presenced_domain::Guid;
use presenced_identity::grants::{AuthorizationCode, CODE_LIFETIME, Grant, is_s256_challenge};

use super::{OAuthError, delegated_scopes, oidc_scopes, route};
use crate::api::AppState;
use crate::api::presence::read_body;

/// `GET /{tenant}/oauth2/v2.0/authorize`: the sign-in page.
#[utoipa::path(get, path = "/{tenant}/oauth2/v2.0/authorize", tag = "identity",
    params(("tenant" = String, Path, description = "A tenant id, `common`, `organizations` or `consumers`.")),
    responses((status = 200, description = "The sign-in page.", content_type = "text/html", body = String),
        (status = 302, description = "Back to the redirect URI with an error.")))]
pub async fn authorize_page(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let params: HashMap<String, String> =
        serde_urlencoded::from_str(parts.uri.query().unwrap_or("")).unwrap_or_default();
    let board = board_redirect_uri(&state, &parts);
    let response = match check(&state, &tenant, &params, board.as_deref()) {
        Err(failure) => failure.respond(),
        Ok(_) => page(&params, None),
    };
    route(response, "/{tenant}/oauth2/v2.0/authorize")
}

/// `POST /{tenant}/oauth2/v2.0/authorize`: the sign-in form's credentials.
#[utoipa::path(post, path = "/{tenant}/oauth2/v2.0/authorize", tag = "identity",
    params(("tenant" = String, Path, description = "A tenant id, `common`, `organizations` or `consumers`.")),
    request_body(content = Object, content_type = "application/x-www-form-urlencoded",
        description = "The authorization request's parameters with `username` and `password`."),
    responses((status = 200, description = "The sign-in page again, with the error.", content_type = "text/html", body = String),
        (status = 302, description = "Back to the redirect URI with a code or an error.")))]
pub async fn authorize_submit(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let params: HashMap<String, String> = match read_body(&parts.headers, body).await {
        Ok(body) => serde_urlencoded::from_bytes(&body).unwrap_or_default(),
        Err(_) => HashMap::new(),
    };
    let board = board_redirect_uri(&state, &parts);
    let response = match check(&state, &tenant, &params, board.as_deref()) {
        Err(failure) => failure.respond(),
        Ok(checked) => sign_in(&state, &params, checked).await,
    };
    route(response, "/{tenant}/oauth2/v2.0/authorize")
}

/// The one redirect URI of the built-in board client ([`presenced_identity::BOARD_APP_ID`]): the
/// board's own page, `{origin}/`, where the origin is `--public-url` when configured, else the scheme
/// and `Host` the request came to (a code sent there goes back to the server that issued it; PKCE binds
/// it to the page that asked). `None` when the `Host` is not a plain authority.
pub(crate) fn board_redirect_uri(
    state: &AppState,
    parts: &axum::http::request::Parts,
) -> Option<String> {
    super::issuer_base(state, parts)
        .ok()
        .map(|base| format!("{base}/"))
}

/// Whether `app` may have codes (or a sign-out) sent to `uri`.
fn allows_redirect(app: &presenced_identity::Application, uri: &str, board: Option<&str>) -> bool {
    if app.builtin {
        board.is_some_and(|b| b.eq_ignore_ascii_case(uri))
    } else {
        app.allows_redirect(uri)
    }
}

/// What a valid authorization request asks for.
struct Checked {
    app: Guid,
    tenant: Option<Guid>,
    redirect: Redirect,
    scopes: Vec<String>,
    oidc: Vec<String>,
    challenge: Option<String>,
    nonce: Option<String>,
}

/// Where and how answers go back to the client.
#[derive(Clone)]
struct Redirect {
    uri: String,
    fragment: bool,
    state: Option<String>,
}

impl Redirect {
    fn with(&self, pairs: &[(&str, &str)]) -> Response {
        let mut all: Vec<(&str, &str)> = pairs.to_vec();
        if let Some(state) = &self.state {
            all.push(("state", state));
        }
        let encoded = serde_urlencoded::to_string(&all).unwrap_or_default();
        let location = if encoded.is_empty() {
            self.uri.clone()
        } else if self.fragment {
            format!("{}#{encoded}", self.uri)
        } else if self.uri.contains('?') {
            format!("{}&{encoded}", self.uri)
        } else {
            format!("{}?{encoded}", self.uri)
        };
        let mut response = StatusCode::FOUND.into_response();
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    fn error(&self, error: &OAuthError) -> Response {
        self.with(&[
            ("error", error.error),
            (
                "error_description",
                &format!("AADSTS{}: {}", error.code, error.description),
            ),
        ])
    }
}

enum Failure {
    /// Shown on a page: no trusted redirect URI yet.
    Page(OAuthError),
    /// Sent back to the client's redirect URI.
    Redirect(Redirect, OAuthError),
}

impl Failure {
    fn respond(self) -> Response {
        match self {
            Failure::Page(error) => error_page(&error),
            Failure::Redirect(redirect, error) => redirect.error(&error),
        }
    }
}

fn check(
    state: &AppState,
    tenant: &str,
    params: &HashMap<String, String>,
    board: Option<&str>,
) -> Result<Checked, Failure> {
    let param = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let multi = ["organizations", "common"].contains(&tenant.to_ascii_lowercase().as_str());
    let tenant_id = match Guid::parse(tenant) {
        Some(t) if state.registry.has_tenant(t) => Some(t),
        None if multi => None,
        _ => return Err(Failure::Page(OAuthError::unknown_tenant(tenant))),
    };
    let client_id = param("client_id").ok_or_else(|| {
        Failure::Page(OAuthError::new(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        ))
    })?;
    let unknown_client = || {
        Failure::Page(OAuthError::new(
            "unauthorized_client",
            700016,
            format!("Application with identifier '{client_id}' was not found in the directory."),
        ))
    };
    let app_id = Guid::parse(client_id).ok_or_else(unknown_client)?;
    // With `common`/`organizations`, the app is looked up where the user signs in; any tenant's
    // registration of the app vouches for the redirect URI meanwhile.
    let app = match tenant_id {
        Some(t) => state.registry.application(t, app_id),
        None => state.registry.any_application(app_id),
    }
    .ok_or_else(unknown_client)?;
    let redirect_uri = param("redirect_uri").unwrap_or("");
    if !allows_redirect(app, redirect_uri, board) {
        return Err(Failure::Page(OAuthError::new(
            "invalid_request",
            50011,
            format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{app_id}'."
            ),
        )));
    }
    let fragment = match param("response_mode") {
        None | Some("query") => false,
        Some("fragment") => true,
        Some(_) => {
            return Err(Failure::Page(OAuthError::new(
                "invalid_request",
                900144,
                "The response_mode must be 'query' or 'fragment'.",
            )));
        }
    };
    let redirect = Redirect {
        uri: redirect_uri.to_string(),
        fragment,
        state: param("state").map(str::to_string),
    };
    let refuse = |error| Failure::Redirect(redirect.clone(), error);
    if param("response_type") != Some("code") {
        return Err(refuse(OAuthError::new(
            "unsupported_response_type",
            700054,
            "The response_type must be 'code': the authorization code flow is the one supported.",
        )));
    }
    let scope = param("scope").unwrap_or("");
    let oidc = oidc_scopes(scope);
    let scopes = if scope
        .split_whitespace()
        .all(|w| oidc.iter().any(|o| o.eq_ignore_ascii_case(w)))
    {
        // Only OpenID scopes: Entra grants the app's consented permissions on Graph.
        app.scopes.clone()
    } else {
        delegated_scopes(scope, &app.scopes).map_err(refuse)?
    };
    if scopes.is_empty() {
        return Err(refuse(OAuthError::new(
            "invalid_scope",
            70011,
            "The provided request must include a permission scope.",
        )));
    }
    let challenge = param("code_challenge");
    match (challenge, param("code_challenge_method")) {
        (None, _) if !app.is_confidential() => {
            return Err(refuse(OAuthError::new(
                "invalid_request",
                9002325,
                "Proof Key for Code Exchange is required for public clients: send code_challenge and code_challenge_method=S256.",
            )));
        }
        (Some(c), Some("S256")) if is_s256_challenge(c) => {}
        (None, _) => {}
        _ => {
            return Err(refuse(OAuthError::new(
                "invalid_request",
                50125,
                "The code_challenge must be an S256 challenge (43 base64url characters) and code_challenge_method 'S256'.",
            )));
        }
    }
    Ok(Checked {
        app: app_id,
        tenant: tenant_id,
        redirect,
        scopes,
        oidc,
        challenge: challenge.map(str::to_string),
        nonce: param("nonce").map(str::to_string),
    })
}

async fn sign_in(state: &AppState, params: &HashMap<String, String>, checked: Checked) -> Response {
    let username = params.get("username").map(String::as_str).unwrap_or("");
    let password = params.get("password").map(String::as_str).unwrap_or("");
    let tenant_id = checked
        .tenant
        .or_else(|| state.registry.tenant_of_user(username));
    let user = tenant_id.and_then(|t| {
        state
            .registry
            .password_user(t, username, password)
            .map(|u| (t, u))
    });
    let Some((tenant_id, user)) = user else {
        return page(
            params,
            Some("Your account or password is incorrect. (AADSTS50126)"),
        );
    };
    if state.registry.application(tenant_id, checked.app).is_none() {
        return checked.redirect.error(&OAuthError::new(
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{}' was not found in the directory '{tenant_id}'.",
                checked.app
            ),
        ));
    }
    let now = Timestamp::now();
    let code = AuthorizationCode {
        grant: Grant {
            tenant: tenant_id,
            app: checked.app,
            user,
            scopes: checked.scopes,
            oidc: checked.oidc,
        },
        redirect_uri: checked.redirect.uri.clone(),
        code_challenge: checked.challenge,
        nonce: checked.nonce,
        expires: now + CODE_LIFETIME,
    };
    let codes = state.codes.clone();
    let issued = if codes.is_shared() {
        tokio::task::spawn_blocking(move || codes.issue(code, now))
            .await
            .unwrap_or_else(|e| {
                Err(presenced_identity::IdentityError::InvalidRequest(
                    e.to_string(),
                ))
            })
    } else {
        codes.issue(code, now)
    };
    match issued {
        Ok(code) => {
            let client_info = super::client_info(user, tenant_id);
            checked
                .redirect
                .with(&[("code", &code), ("client_info", &client_info)])
        }
        Err(e) => checked.redirect.error(&super::server_error(e)),
    }
}

/// `GET`/`POST /{tenant}/oauth2/v2.0/logout`: nothing to forget (presenced keeps no sign-in session);
/// back to `post_logout_redirect_uri` when it is registered, else a signed-out page.
#[utoipa::path(method(get, post), path = "/{tenant}/oauth2/v2.0/logout", tag = "identity",
    params(("tenant" = String, Path, description = "A tenant id, `common`, `organizations` or `consumers`.")),
    responses((status = 200, description = "The signed-out page.", content_type = "text/html", body = String),
        (status = 302, description = "To a registered `post_logout_redirect_uri`.")))]
pub async fn logout(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let mut params: HashMap<String, String> =
        serde_urlencoded::from_str(parts.uri.query().unwrap_or("")).unwrap_or_default();
    if let Ok(body) = read_body(&parts.headers, body).await
        && let Ok(form) = serde_urlencoded::from_bytes::<HashMap<String, String>>(&body)
    {
        params.extend(form);
    }
    let param = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let tenants: Vec<Guid> = match Guid::parse(&tenant) {
        Some(t) => vec![t],
        None => state.registry.tenants(),
    };
    let app = param("client_id").and_then(Guid::parse);
    let board = board_redirect_uri(&state, &parts);
    let allowed = |uri: &str| {
        tenants.iter().any(|t| match app {
            Some(app) => state
                .registry
                .application(*t, app)
                .is_some_and(|a| allows_redirect(a, uri, board.as_deref())),
            None => state.registry.allows_logout_redirect(*t, None, uri),
        })
    };
    let response = match param("post_logout_redirect_uri") {
        Some(uri) if allowed(uri) => Redirect {
            uri: uri.to_string(),
            fragment: false,
            state: param("state").map(str::to_string),
        }
        .with(&[]),
        Some(_) => error_page(&OAuthError::new(
            "invalid_request",
            50011,
            "The post_logout_redirect_uri is not registered for the application.",
        )),
        None => html(
            StatusCode::OK,
            "Signed out",
            "<h1>Signed out</h1><p>You have signed out. You can close this window.</p>",
        ),
    };
    route(response, "/{tenant}/oauth2/v2.0/logout")
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The request's parameters that the form carries back, besides the credentials.
const CARRIED: [&str; 11] = [
    "client_id",
    "redirect_uri",
    "response_type",
    "response_mode",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "client_info",
];

fn page(params: &HashMap<String, String>, message: Option<&str>) -> Response {
    let mut hidden = String::new();
    for name in CARRIED {
        if let Some(value) = params.get(name) {
            hidden.push_str(&format!(
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n",
                escape(value)
            ));
        }
    }
    let hint = params
        .get("username")
        .or_else(|| params.get("login_hint"))
        .map(|h| escape(h))
        .unwrap_or_default();
    let message = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Sign in</h1>\n<p>presenced test directory</p>\n{message}\
         <form method=\"post\" id=\"signin\">\n{hidden}\
         <label>Email or username<input type=\"text\" name=\"username\" id=\"username\" autocomplete=\"username\" value=\"{hint}\" required></label>\n\
         <label>Password<input type=\"password\" name=\"password\" id=\"password\" autocomplete=\"current-password\" required></label>\n\
         <button type=\"submit\" id=\"submit\">Sign in</button>\n</form>"
    );
    html(StatusCode::OK, "Sign in", &body)
}

fn error_page(error: &OAuthError) -> Response {
    let body = format!(
        "<h1>Sorry, but we're having trouble signing you in.</h1>\n<p class=\"error\" id=\"error\">{}: AADSTS{}: {}</p>",
        escape(error.error),
        error.code,
        escape(&error.description)
    );
    html(error.status, "Sign-in error", &body)
}

fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let document = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>body{{font-family:sans-serif;max-width:24rem;margin:3rem auto;padding:0 1rem}}\
         label{{display:block;margin:.75rem 0}}input{{display:block;width:100%;padding:.4rem;box-sizing:border-box}}\
         button{{padding:.5rem 1.5rem}}.error{{color:#a4262c}}</style></head>\n<body>\n{body}\n</body></html>\n"
    );
    let mut response = (status, document).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // No `form-action`: browsers apply it to where the form's answer
    // redirects too, and that answer redirects to the app's redirect URI,
    // another origin ('self' made Chromium block every sign-in).
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
