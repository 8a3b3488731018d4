//! JSON batching: `POST /v1.0/$batch` and `/beta/$batch` (also spelled
//! `%24batch`).
//!
//! Up to [`MAX_REQUESTS`] requests, ids unique, `dependsOn` naming ids of
//! the same batch (no cycles). Each sub-request is dispatched through the
//! same routes as a request of its own (`oneshot` on the router without
//! `$batch` and CORS, inside the envelope), so every route works, each is
//! authenticated with the batch's `Authorization` header and throttled on
//! its own, and a 429 inside the batch carries its own `Retry-After`. URLs
//! are relative to the batch's version (`/me/presence`, `me/presence`, or
//! `/v1.0/me/presence` in a `/v1.0` batch). Requests run one at a time, in
//! the order given except that a request runs after the ones it depends on;
//! one whose dependency failed (not 2xx) is answered `424 Failed
//! Dependency` without running. Answers come in the order of the requests.
//!
//! Request-level errors (a body that is not a batch, too many requests,
//! duplicate ids, unknown or circular dependencies) are the whole batch's
//! `400`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use tower::ServiceExt;

use super::error::ApiError;
use super::route::Version;
use super::{AppState, RouteName, json_response};

/// Graph's limit on the requests of one batch.
pub const MAX_REQUESTS: usize = 20;

/// The most of one sub-response's body kept for the batch's answer.
const MAX_SUB_RESPONSE: usize = 4 * 1024 * 1024;

/// One request of a batch, checked.
#[derive(Debug)]
struct Item {
    id: String,
    method: Method,
    url: String,
    depends_on: Vec<usize>,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Value>,
}

/// Serves `$batch` of `version`; `inner` is the router sub-requests go
/// through.
pub async fn handle(
    State(state): State<Arc<AppState>>,
    inner: Router,
    version: Version,
    request: Request,
) -> Response {
    let mut response = match run(&state, inner, version, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    response.extensions_mut().insert(RouteName("/$batch"));
    response
}

async fn run(
    state: &AppState,
    inner: Router,
    version: Version,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    // The batch's token is checked once up front (a batch without a valid
    // token is refused as a whole, as Graph does); each sub-request is
    // authenticated and throttled again on its own.
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let principal = state
        .validator
        .validate(authorization)
        .map_err(|e| ApiError::unauthenticated(e.to_string()))?;
    super::authz::check_account(&principal)?;

    let body = super::presence::read_body(&parts.headers, body).await?;
    let items = parse(&parts.headers, &body)?;
    let order = execution_order(&items)?;

    let mut statuses: Vec<Option<u16>> = vec![None; items.len()];
    let mut answers: Vec<Option<Value>> = vec![None; items.len()];
    for index in order {
        let item = &items[index];
        let failed = item
            .depends_on
            .iter()
            .find(|&&d| !statuses[d].is_some_and(|s| (200..300).contains(&s)));
        let (status, answer) = match failed {
            Some(&dependency) => failed_dependency(item, &items[dependency].id),
            None => dispatch(&inner, &parts, version, item).await,
        };
        statuses[index] = Some(status);
        answers[index] = Some(answer);
    }
    let responses: Vec<Value> = answers.into_iter().flatten().collect();
    let body =
        serde_json::to_vec(&json!({ "responses": responses })).map_err(ApiError::internal)?;
    Ok(json_response(StatusCode::OK, body))
}

fn invalid(message: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Invalid batch payload format: {message}"))
}

/// Reads and checks the batch body.
fn parse(headers: &HeaderMap, body: &Bytes) -> Result<Vec<Item>, ApiError> {
    let value: Value = super::presence::parse_json(headers, body)?;
    let requests = value
        .get("requests")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("the body must be an object with a 'requests' array."))?;
    if requests.is_empty() {
        return Err(invalid("the batch has no requests."));
    }
    if requests.len() > MAX_REQUESTS {
        return Err(invalid(format!(
            "a batch may contain at most {MAX_REQUESTS} requests; this one contains {}.",
            requests.len()
        )));
    }
    let mut ids: HashMap<String, usize> = HashMap::with_capacity(requests.len());
    for (index, request) in requests.iter().enumerate() {
        let id = match request.get("id") {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(invalid(format!(
                    "request {} needs an 'id' (a non-empty string).",
                    index + 1
                )));
            }
        };
        if ids.insert(id.clone(), index).is_some() {
            return Err(invalid(format!(
                "the request id '{id}' is used more than once; ids must be unique."
            )));
        }
    }
    let mut items = Vec::with_capacity(requests.len());
    for request in requests {
        let Some(object) = request.as_object() else {
            return Err(invalid("every request must be a JSON object."));
        };
        let id = match &object["id"] {
            Value::String(id) => id.clone(),
            other => other.to_string(),
        };
        let method = object
            .get("method")
            .and_then(Value::as_str)
            .and_then(|m| match m.to_ascii_uppercase().as_str() {
                "GET" => Some(Method::GET),
                "POST" => Some(Method::POST),
                "PUT" => Some(Method::PUT),
                "PATCH" => Some(Method::PATCH),
                "DELETE" => Some(Method::DELETE),
                _ => None,
            })
            .ok_or_else(|| {
                invalid(format!(
                    "request '{id}' needs a 'method': GET, POST, PUT, PATCH or DELETE."
                ))
            })?;
        let url = object
            .get("url")
            .and_then(Value::as_str)
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| invalid(format!("request '{id}' needs a 'url'.")))?
            .to_owned();
        let depends_on = match object.get("dependsOn") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .map(|d| {
                    let name = match d {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        _ => String::new(),
                    };
                    match ids.get(&name) {
                        Some(&index) if name != id => Ok(index),
                        _ => Err(invalid(format!(
                            "request '{id}' depends on '{name}', which is not another request of this batch."
                        ))),
                    }
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(invalid(format!(
                    "'dependsOn' of request '{id}' must be a list of request ids."
                )));
            }
        };
        let mut headers = Vec::new();
        match object.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (name, value) in map {
                    let value = match value {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        // Some clients send each header as a list of values.
                        Value::Array(values) => values
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", "),
                        _ => String::new(),
                    };
                    let (Ok(name), Ok(value)) = (
                        HeaderName::from_bytes(name.as_bytes()),
                        HeaderValue::from_str(&value),
                    ) else {
                        return Err(invalid(format!(
                            "request '{id}' has a header '{name}' that is not a valid HTTP header."
                        )));
                    };
                    headers.push((name, value));
                }
            }
            Some(_) => {
                return Err(invalid(format!(
                    "'headers' of request '{id}' must be an object."
                )));
            }
        }
        items.push(Item {
            id,
            method,
            url,
            depends_on,
            headers,
            body: object.get("body").filter(|b| !b.is_null()).cloned(),
        });
    }
    Ok(items)
}

/// The order to run the requests in: as given, except that a request waits
/// for the ones it depends on. Circular dependencies are the batch's 400.
fn execution_order(items: &[Item]) -> Result<Vec<usize>, ApiError> {
    let mut order = Vec::with_capacity(items.len());
    let mut done = vec![false; items.len()];
    // At most n passes, each placing one request at least.
    for _ in 0..items.len() {
        let Some(next) =
            (0..items.len()).find(|&i| !done[i] && items[i].depends_on.iter().all(|&d| done[d]))
        else {
            break;
        };
        done[next] = true;
        order.push(next);
    }
    if order.len() < items.len() {
        let stuck: Vec<&str> = (0..items.len())
            .filter(|&i| !done[i])
            .map(|i| items[i].id.as_str())
            .collect();
        return Err(invalid(format!(
            "the dependencies of requests {} form a cycle.",
            stuck.join(", ")
        )));
    }
    Ok(order)
}

fn failed_dependency(item: &Item, dependency: &str) -> (u16, Value) {
    let status = StatusCode::FAILED_DEPENDENCY.as_u16();
    (
        status,
        json!({
            "id": item.id,
            "status": status,
            "headers": {"Content-Type": "application/json"},
            "body": {"error": {
                "code": "FailedDependency",
                "message": format!("The request was not run because request '{dependency}', which it depends on, failed."),
            }},
        }),
    )
}

/// A sub-request's own 400, for a URL that cannot be dispatched.
fn sub_error(item: &Item, code: &str, message: &str) -> (u16, Value) {
    (
        400,
        json!({
            "id": item.id,
            "status": 400,
            "headers": {"Content-Type": "application/json"},
            "body": {"error": {"code": code, "message": message}},
        }),
    )
}

/// The path and query a batch URL names, under `/{version}`.
fn target(version: Version, url: &str) -> Result<String, &'static str> {
    let mut rest = url.trim();
    // An absolute URL is taken for its path: the batch is on this server.
    if let Some((_, after)) = rest.split_once("://") {
        rest = after.find('/').map_or("", |slash| &after[slash..]);
    }
    let rest = rest.trim_start_matches('/');
    let mut segments = rest.splitn(2, '/');
    let first = segments.next().unwrap_or("");
    let rest = match first {
        "v1.0" | "beta" if first == version.as_str() => segments.next().unwrap_or(""),
        "v1.0" | "beta" => {
            return Err(
                "URLs in a batch are relative to the batch's version; this request names the other one.",
            );
        }
        _ => rest,
    };
    let path = rest.split(['?', '#']).next().unwrap_or("");
    let first = path.split('/').next().unwrap_or("");
    if first.eq_ignore_ascii_case("$batch") || first.eq_ignore_ascii_case("%24batch") {
        return Err("A batch cannot contain another $batch request.");
    }
    // Spaces are common in hand-written $filter values; encode them.
    Ok(format!(
        "/{}/{}",
        version.as_str(),
        rest.replace(' ', "%20")
    ))
}

/// Runs one request through the router and turns its answer into the
/// batch's shape.
async fn dispatch(inner: &Router, batch: &Parts, version: Version, item: &Item) -> (u16, Value) {
    let path = match target(version, &item.url) {
        Ok(path) => path,
        Err(message) => return sub_error(item, "BadRequest", message),
    };
    let Ok(uri) = path.parse::<Uri>() else {
        return sub_error(
            item,
            "BadRequest",
            "The request's 'url' is not a valid relative URL.",
        );
    };
    let mut builder = Request::builder().method(item.method.clone()).uri(uri);
    let has_content_type = item.headers.iter().any(|(n, _)| n == header::CONTENT_TYPE);
    for (name, value) in &item.headers {
        // The batch's credentials apply to every request; hop-by-hop and
        // framing headers belong to the batch's own message.
        if name == header::AUTHORIZATION
            || name == header::HOST
            || name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        builder = builder.header(name, value);
    }
    for name in [header::AUTHORIZATION, header::HOST] {
        if let Some(value) = batch.headers.get(&name) {
            builder = builder.header(name, value);
        }
    }
    let body = match &item.body {
        None => Bytes::new(),
        Some(value) => {
            let content_type = item
                .headers
                .iter()
                .find(|(n, _)| n == header::CONTENT_TYPE)
                .and_then(|(_, v)| v.to_str().ok())
                .unwrap_or("application/json");
            let json_type = is_json_type(content_type);
            match value {
                Value::String(text) if !json_type => match STANDARD.decode(text) {
                    Ok(bytes) => Bytes::from(bytes),
                    Err(_) => {
                        return sub_error(
                            item,
                            "BadRequest",
                            "A body that is not JSON must be base64-encoded.",
                        );
                    }
                },
                other => Bytes::from(serde_json::to_vec(other).unwrap_or_default()),
            }
        }
    };
    if item.body.is_some() && !has_content_type {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    let Ok(mut request) = builder.body(Body::from(body)) else {
        return sub_error(item, "BadRequest", "The request could not be built.");
    };
    if let Some(connect) = batch.extensions.get::<ConnectInfo<SocketAddr>>() {
        request.extensions_mut().insert(*connect);
    }
    if let Some(scheme) = batch.extensions.get::<crate::transport::Scheme>() {
        request.extensions_mut().insert(*scheme);
    }
    if let Some(local) = batch.extensions.get::<crate::transport::LocalAddr>() {
        request.extensions_mut().insert(*local);
    }
    let response = match inner.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let streams = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if streams {
        // A stream never ends: it cannot be an answer inside a batch.
        return sub_error(
            item,
            "BadRequest",
            "The live stream cannot be read inside a batch; open it on its own.",
        );
    }
    answer(item, response).await
}

fn is_json_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

/// `{"id","status","headers","body"}` of one answer.
async fn answer(item: &Item, response: Response) -> (u16, Value) {
    let (parts, body) = response.into_parts();
    let status = parts.status.as_u16();
    let mut headers = Map::new();
    for name in parts.headers.keys() {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        let values: Vec<&str> = parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        headers.insert(canonical(name.as_str()), Value::String(values.join(", ")));
    }
    let mut out = Map::new();
    out.insert("id".into(), Value::String(item.id.clone()));
    out.insert("status".into(), Value::from(status));
    out.insert("headers".into(), Value::Object(headers));
    let bytes = axum::body::to_bytes(body, MAX_SUB_RESPONSE)
        .await
        .unwrap_or_default();
    if !bytes.is_empty() {
        let json_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_type);
        let body = if json_type {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(STANDARD.encode(&bytes)))
        } else {
            Value::String(STANDARD.encode(&bytes))
        };
        out.insert("body".into(), body);
    }
    (status, Value::Object(out))
}

/// `retry-after` as Graph writes it: `Retry-After`; the request ids stay
/// in lower case, as Graph sends them.
fn canonical(name: &str) -> String {
    if name == "request-id" || name == "client-request-id" {
        return name.to_owned();
    }
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(body: Value) -> Result<Vec<Item>, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        parse(&headers, &Bytes::from(body.to_string()))
    }

    fn request(id: &str, depends_on: &[&str]) -> Value {
        json!({"id": id, "method": "GET", "url": "/me/presence", "dependsOn": depends_on})
    }

    #[test]
    fn urls_are_relative_to_the_batch_version() {
        assert_eq!(
            target(Version::V1, "/me/presence").unwrap(),
            "/v1.0/me/presence"
        );
        assert_eq!(
            target(Version::V1, "me/presence").unwrap(),
            "/v1.0/me/presence"
        );
        assert_eq!(
            target(Version::Beta, "/beta/users?$top=2").unwrap(),
            "/beta/users?$top=2"
        );
        assert_eq!(
            target(Version::V1, "https://graph.microsoft.com/v1.0/me").unwrap(),
            "/v1.0/me"
        );
        assert_eq!(
            target(Version::V1, "/users?$filter=startswith(displayName,'a b')").unwrap(),
            "/v1.0/users?$filter=startswith(displayName,'a%20b')"
        );
        assert!(target(Version::V1, "/beta/me").is_err());
        assert!(target(Version::V1, "/$batch").is_err());
        assert!(target(Version::V1, "%24batch").is_err());
    }

    #[test]
    fn dependencies_order_the_run_and_cycles_are_refused() {
        let batch = items(json!({"requests": [
            request("1", &["3"]), request("2", &[]), request("3", &["2"])
        ]}))
        .unwrap();
        let order: Vec<&str> = execution_order(&batch)
            .unwrap()
            .into_iter()
            .map(|i| batch[i].id.as_str())
            .collect();
        assert_eq!(order, ["2", "3", "1"]);
        let cycle =
            items(json!({"requests": [request("1", &["2"]), request("2", &["1"])]})).unwrap();
        assert!(execution_order(&cycle).is_err());
    }

    #[test]
    fn malformed_batches_are_refused_whole() {
        for body in [
            json!({}),
            json!({"requests": {}}),
            json!({"requests": []}),
            json!({"requests": [request("1", &[]), request("1", &[])]}),
            json!({"requests": [request("1", &["1"])]}),
            json!({"requests": [request("1", &["9"])]}),
            json!({"requests": [{"id": "1", "method": "FLY", "url": "/me"}]}),
            json!({"requests": [{"id": "1", "method": "GET"}]}),
            json!({"requests": [{"method": "GET", "url": "/me"}]}),
            json!({"requests": [{"id": "1", "method": "GET", "url": "/me", "headers": {"bad header": "x"}}]}),
            json!({"requests": (0..21).map(|i| request(&i.to_string(), &[])).collect::<Vec<_>>()}),
        ] {
            let error = items(body.clone()).unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{body}");
        }
        assert_eq!(
            items(json!({"requests": (0..20).map(|i| request(&i.to_string(), &[])).collect::<Vec<_>>()}))
                .unwrap()
                .len(),
            20
        );
    }

    #[test]
    fn header_values_may_be_lists() {
        let batch = items(json!({"requests": [{"id": "1", "method": "GET", "url": "/me",
            "headers": {"Accept": ["application/json", "text/plain"], "ConsistencyLevel": "eventual"}}]}))
        .unwrap();
        assert_eq!(
            batch[0].headers[0],
            (
                header::ACCEPT,
                HeaderValue::from_static("application/json, text/plain")
            )
        );
    }

    #[test]
    fn header_names_are_written_as_graph_writes_them() {
        assert_eq!(canonical("retry-after"), "Retry-After");
        assert_eq!(canonical("content-type"), "Content-Type");
        assert_eq!(canonical("request-id"), "request-id");
    }
}
