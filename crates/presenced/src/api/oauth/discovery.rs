//! Discovery: the OpenID configuration, the signing keys, and the two calls MSAL makes before it asks
//! for a token (instance discovery and the user realm).

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use presenced_identity::issuer_at;

use super::{OAuthError, issuer_base, json, known_tenant, route};
use crate::api::AppState;

/// The tenants that stand for "whichever tenant the user belongs to", as Entra's.
const MULTI_TENANT: [&str; 2] = ["common", "organizations"];

/// The tenant segment as discovery names it: a known tenant's id, or `common`/`organizations`.
fn discovery_tenant(state: &AppState, tenant: &str) -> Result<String, OAuthError> {
    let lower = tenant.to_ascii_lowercase();
    if MULTI_TENANT.contains(&lower.as_str()) {
        return Ok(lower);
    }
    known_tenant(state, tenant).map(|t| t.to_string())
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`.
#[utoipa::path(get, path = "/{tenant}/v2.0/.well-known/openid-configuration", tag = "identity",
    params(("tenant" = String, Path, description = "A tenant id, `common`, `organizations` or `consumers`.")),
    responses((status = 200, description = "OpenID Connect discovery.", content_type = "application/json", body = crate::api::openapi::OpenIdConfigurationDoc),
        (status = 400, description = "Unknown tenant.", content_type = "application/json", body = crate::api::openapi::OAuthErrorDoc)))]
pub async fn openid_configuration(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let document = discovery_tenant(&state, &tenant).and_then(|segment| {
        let base = issuer_base(&state, &parts)?;
        let issuer = match Guid::parse(&segment) {
            Some(tid) => issuer_at(&base, tid),
            // As Entra: the multi-tenant document's issuer is a template.
            None => format!("{base}/{{tenantid}}/v2.0"),
        };
        let host = base.split_once("://").map_or("", |(_, h)| h).to_string();
        Ok(serde_json::json!({
            "issuer": issuer,
            "token_endpoint": format!("{base}/{segment}/oauth2/v2.0/token"),
            "jwks_uri": format!("{base}/{segment}/discovery/v2.0/keys"),
            "authorization_endpoint": format!("{base}/{segment}/oauth2/v2.0/authorize"),
            "end_session_endpoint": format!("{base}/{segment}/oauth2/v2.0/logout"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", "password"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "code_challenge_methods_supported": ["S256"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid", "name", "preferred_username", "nonce", "ver"],
            "request_uri_parameter_supported": false,
            "frontchannel_logout_supported": false,
            "http_logout_supported": true,
            "tenant_region_scope": null,
            "cloud_instance_name": host,
            "cloud_graph_host_name": host,
            "msgraph_host": host,
            "rbac_url": base,
        }))
    });
    let response = match document {
        Ok(document) => json(StatusCode::OK, &document),
        Err(e) => e.render(""),
    };
    route(response, "/{tenant}/v2.0/.well-known/openid-configuration")
}

/// `GET /{tenant}/discovery/v2.0/keys`.
#[utoipa::path(get, path = "/{tenant}/discovery/v2.0/keys", tag = "identity",
    params(("tenant" = String, Path, description = "A tenant id, `common`, `organizations` or `consumers`.")),
    responses((status = 200, description = "The signing keys.", content_type = "application/json", body = crate::api::openapi::JsonWebKeySetDoc),
        (status = 400, description = "Unknown tenant.", content_type = "application/json", body = crate::api::openapi::OAuthErrorDoc)))]
pub async fn keys(State(state): State<Arc<AppState>>, Path(tenant): Path<String>) -> Response {
    let response = match discovery_tenant(&state, &tenant) {
        Err(e) => e.render(""),
        Ok(_) => json(StatusCode::OK, &state.issuer_key.jwks_json()),
    };
    route(response, "/{tenant}/discovery/v2.0/keys")
}

/// `GET /common/discovery/instance?api-version=1.1&authorization_endpoint=...`: MSAL's instance
/// discovery. presenced is its own cloud of one host: the metadata names the host the request came to
/// (or the public URL's) as the only alias, and the tenant discovery document under it.
#[utoipa::path(get, path = "/{tenant}/discovery/instance", tag = "identity",
    params(("tenant" = String, Path, description = "A tenant id, `common`, `organizations` or `consumers`.")),
    responses((status = 200, description = "MSAL's instance metadata.", content_type = "application/json", body = crate::api::openapi::InstanceDiscoveryDoc),
        (status = 400, description = "Unknown tenant.", content_type = "application/json", body = crate::api::openapi::OAuthErrorDoc)))]
pub async fn instance_discovery(
    State(state): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let answer = discovery_tenant(&state, &tenant).and_then(|_| {
        let base = issuer_base(&state, &parts)?;
        let host = base.split_once("://").map_or("", |(_, h)| h).to_string();
        Ok(serde_json::json!({
            "tenant_discovery_endpoint": format!("{base}/common/v2.0/.well-known/openid-configuration"),
            "api-version": "1.1",
            "metadata": [{
                "preferred_network": host,
                "preferred_cache": host,
                "aliases": [host],
            }],
        }))
    });
    let response = match answer {
        Ok(answer) => json(StatusCode::OK, &answer),
        Err(e) => e.render(""),
    };
    route(response, "/{tenant}/discovery/instance")
}

/// `GET /common/userrealm/{upn}?api-version=1.0`: every account is a managed (cloud) one, so MSAL
/// goes on with the username/password grant instead of looking for a federation server.
#[utoipa::path(get, path = "/{tenant}/userrealm/{user}", tag = "identity",
    params(("tenant" = String, Path, description = "A tenant id, `common`, `organizations` or `consumers`."),
        ("user" = String, Path, description = "A user principal name.")),
    responses((status = 200, description = "The account type (always managed).", content_type = "application/json", body = crate::api::openapi::UserRealmDoc),
        (status = 400, description = "Unknown tenant.", content_type = "application/json", body = crate::api::openapi::OAuthErrorDoc)))]
pub async fn user_realm(
    State(state): State<Arc<AppState>>,
    Path((tenant, user)): Path<(String, String)>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let answer = discovery_tenant(&state, &tenant).and_then(|_| {
        let base = issuer_base(&state, &parts)?;
        let host = base.split_once("://").map_or("", |(_, h)| h).to_string();
        let domain = user
            .rsplit_once('@')
            .map(|(_, d)| d)
            .filter(|d| presenced_identity::is_authority(d))
            .unwrap_or("")
            .to_string();
        Ok(serde_json::json!({
            "ver": "1.0",
            "account_type": "Managed",
            "domain_name": domain,
            "cloud_instance_name": host,
            "cloud_audience_urn": "urn:federation:MicrosoftOnline",
        }))
    });
    let response = match answer {
        Ok(answer) => json(StatusCode::OK, &answer),
        Err(e) => e.render(""),
    };
    route(response, "/{tenant}/userrealm/{user}")
}

use presenced_domain::Guid;
