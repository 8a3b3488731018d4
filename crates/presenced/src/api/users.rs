//! Directory reads Graph apps make before presence: `GET /me`,
//! `GET /users/{id | userPrincipalName}`, `GET /users` (`$select`, `$top`,
//! `$filter`, `$search`, `$orderby`, `$count`, paging with `$skiptoken`),
//! `GET /users/$count`, and the users' photos (none are stored: Graph's
//! `404 ImageNotFound`).
//!
//! Steps, in Graph's order: authenticate (401), refuse personal accounts
//! (403), throttle (429), query options (400), permission (403), the user
//! (404). Users are read from the store's directory of the caller's tenant;
//! string comparisons ignore case, as the directory's do.

use std::fmt::Write as _;

use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use percent_encoding::percent_decode_str;
use presenced_domain::Guid;
use presenced_identity::Principal;
use presenced_store::{DirectoryUser, UserKey};
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::Value;

use super::authz::{self, UserAccess};
use super::error::ApiError;
use super::route::Version;
use super::{AppState, RouteName, json_response};

/// A directory URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRoute {
    /// `/me`.
    Me,
    /// `/users/{id | userPrincipalName}`.
    User(String),
    /// `/users`.
    List,
    /// `/users/$count`.
    Count,
    /// `/me/photo[/$value]`, `/users/{id}/photo[/$value]`: `None` is `/me`.
    Photo(Option<String>),
}

impl UserRoute {
    fn template(&self) -> &'static str {
        match self {
            UserRoute::Me => "/me",
            UserRoute::User(_) => "/users/{id}",
            UserRoute::List => "/users",
            UserRoute::Count => "/users/$count",
            UserRoute::Photo(None) => "/me/photo",
            UserRoute::Photo(Some(_)) => "/users/{id}/photo",
        }
    }
}

/// Every directory route's template (without the version) and method.
pub fn templates() -> Vec<(&'static str, String)> {
    [
        UserRoute::Me,
        UserRoute::User(String::new()),
        UserRoute::List,
        UserRoute::Count,
        UserRoute::Photo(None),
        UserRoute::Photo(Some(String::new())),
    ]
    .iter()
    .map(|route| ("GET", route.template().to_string()))
    .collect()
}

/// Recognises a directory path under `/v1.0` or `/beta`.
pub fn parse(path: &str) -> Option<(Version, UserRoute)> {
    let mut raw = path.strip_prefix('/')?.split('/');
    let version = match raw.next()? {
        "v1.0" => Version::V1,
        "beta" => Version::Beta,
        _ => return None,
    };
    let segments: Vec<String> = raw
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let is = |s: &str, name: &str| s.eq_ignore_ascii_case(name);
    let route = match segments.as_slice() {
        [me] if is(me, "me") => UserRoute::Me,
        [me, photo] if is(me, "me") && is(photo, "photo") => UserRoute::Photo(None),
        [me, photo, value] if is(me, "me") && is(photo, "photo") && is(value, "$value") => {
            UserRoute::Photo(None)
        }
        [users] if is(users, "users") => UserRoute::List,
        [users, count] if is(users, "users") && is(count, "$count") => UserRoute::Count,
        [users, id] if is(users, "users") && !id.is_empty() => UserRoute::User(id.to_string()),
        [users, id, photo] if is(users, "users") && is(photo, "photo") => {
            UserRoute::Photo(Some(id.to_string()))
        }
        [users, id, photo, value]
            if is(users, "users") && is(photo, "photo") && is(value, "$value") =>
        {
            UserRoute::Photo(Some(id.to_string()))
        }
        _ => return None,
    };
    Some((version, route))
}

/// Serves a directory route; every one answers `GET` only.
pub async fn dispatch(
    state: &AppState,
    version: Version,
    route: UserRoute,
    parts: &Parts,
) -> Response {
    let mut response = if parts.method != axum::http::Method::GET {
        let mut response = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{} is not allowed on this resource; use GET.", parts.method),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        response
    } else {
        handle(state, version, &route, parts)
            .await
            .unwrap_or_else(IntoResponse::into_response)
    };
    response
        .extensions_mut()
        .insert(RouteName(route.template()));
    response
}

async fn handle(
    state: &AppState,
    version: Version,
    route: &UserRoute,
    parts: &Parts,
) -> Result<Response, ApiError> {
    let principal = super::presence::authenticate(state, &parts.headers).await?;
    let query = Query::parse(parts.uri.query())?;
    match route {
        UserRoute::Me => {
            let id = me(&principal)?;
            get_user(state, version, &principal, &id.to_string(), &query, parts).await
        }
        UserRoute::User(id) => get_user(state, version, &principal, id, &query, parts).await,
        UserRoute::List => list(state, version, &principal, &query, parts, false).await,
        UserRoute::Count => list(state, version, &principal, &query, parts, true).await,
        UserRoute::Photo(id) => {
            let id = match id {
                Some(id) => id.clone(),
                None => me(&principal)?.to_string(),
            };
            let user = find(state, &principal, &id).await?;
            authz::read_users(&principal, user.as_ref().map(|u| u.id))?;
            if user.is_none() {
                return Err(not_found(&id));
            }
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "ImageNotFound",
                "The photo wasn't found.",
            ))
        }
    }
}

fn me(principal: &Principal) -> Result<Guid, ApiError> {
    principal
        .user
        .filter(|_| principal.is_delegated())
        .ok_or_else(|| {
            ApiError::bad_request("/me request is only valid with delegated authentication flow.")
        })
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
        format!(
            "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
        ),
    )
}

/// The user an id or userPrincipalName names in the caller's tenant.
async fn find(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<Option<DirectoryUser>, ApiError> {
    if let Some(guid) = Guid::parse(id) {
        return Ok(state
            .store
            .user(UserKey {
                tenant: principal.tenant,
                user: guid,
            })
            .await?);
    }
    Ok(state
        .store
        .tenant_users(principal.tenant)
        .await?
        .into_iter()
        .find(|user| unicase_eq(&user.user_principal_name, id)))
}

async fn get_user(
    state: &AppState,
    version: Version,
    principal: &Principal,
    id: &str,
    query: &Query,
    parts: &Parts,
) -> Result<Response, ApiError> {
    let user = find(state, principal, id).await?;
    let access = authz::read_users(principal, user.as_ref().map(|u| u.id))?;
    let user = user.ok_or_else(|| not_found(id))?;
    let mut context = metadata_url(parts, version);
    context.push_str("#users");
    query.select.write_context(&mut context);
    context.push_str("/$entity");
    let mut entries = vec![("@odata.context", Value::String(context))];
    entries.extend(query.select.entries(&user, access));
    let body = serde_json::to_vec(&Ordered(entries)).map_err(ApiError::internal)?;
    Ok(json_response(StatusCode::OK, body))
}

async fn list(
    state: &AppState,
    version: Version,
    principal: &Principal,
    query: &Query,
    parts: &Parts,
    count_only: bool,
) -> Result<Response, ApiError> {
    let eventual = parts
        .headers
        .get("consistencylevel")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("eventual"));
    if (count_only || query.count == Some(true)) && !eventual {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            "$count is not currently supported. Send the header ConsistencyLevel: eventual to count users.",
        ));
    }
    if query.search.is_some() && !eventual {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Request_UnsupportedQuery",
            "Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'",
        ));
    }
    let access = authz::read_users(principal, None)?;
    let mut users = state.store.tenant_users(principal.tenant).await?;
    if let Some(filter) = &query.filter {
        users.retain(|user| filter.matches(user));
    }
    if let Some(search) = &query.search {
        users.retain(|user| search.matches(user));
    }
    if count_only {
        let mut response = (StatusCode::OK, users.len().to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain;charset=utf-8"),
        );
        return Ok(response);
    }
    if let Some((property, descending)) = query.order_by {
        users.sort_by(|a, b| {
            let key = |u: &DirectoryUser| text_of(u, property).unwrap_or("").to_lowercase();
            let order = key(a).cmp(&key(b)).then(a.id.cmp(&b.id));
            if descending { order.reverse() } else { order }
        });
    }
    let total = users.len();
    let start = query.skip.min(total);
    let end = start.saturating_add(query.top).min(total);

    let mut context = metadata_url(parts, version);
    context.push_str("#users");
    query.select.write_context(&mut context);
    let mut entries = vec![("@odata.context", Value::String(context))];
    if query.count == Some(true) {
        entries.push(("@odata.count", Value::from(total)));
    }
    if end < total {
        entries.push(("@odata.nextLink", Value::String(next_link(parts, end))));
    }
    let value: Vec<Value> = users[start..end]
        .iter()
        .map(|user| {
            serde_json::to_value(Ordered(query.select.entries(user, access))).unwrap_or_default()
        })
        .collect();
    entries.push(("value", Value::Array(value)));
    let body = serde_json::to_vec(&Ordered(entries)).map_err(ApiError::internal)?;
    Ok(json_response(StatusCode::OK, body))
}

/// `http://host/v1.0/$metadata`.
fn metadata_url(parts: &Parts, version: Version) -> String {
    let mut url = super::context_base(parts);
    let _ = write!(url, "/{}/$metadata", version.as_str());
    url
}

/// The same URL with the next page's `$skiptoken`.
fn next_link(parts: &Parts, offset: usize) -> String {
    let mut url = super::context_base(parts);
    url.push_str(parts.uri.path());
    url.push('?');
    for pair in parts.uri.query().unwrap_or("").split('&') {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        let name = percent_decode_str(name).decode_utf8_lossy();
        if pair.is_empty() || name.eq_ignore_ascii_case("$skiptoken") {
            continue;
        }
        url.push_str(pair);
        url.push('&');
    }
    url.push_str("$skiptoken=");
    url.push_str(&skip_token(offset));
    url
}

const SKIP_TOKEN_PREFIX: &str = "presenced-users:";

fn skip_token(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("{SKIP_TOKEN_PREFIX}{offset}"))
}

fn parse_skip_token(token: &str) -> Option<usize> {
    let bytes = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    text.strip_prefix(SKIP_TOKEN_PREFIX)?.parse().ok()
}

/// A user property presenced knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Property {
    BusinessPhones,
    DisplayName,
    GivenName,
    JobTitle,
    Mail,
    MobilePhone,
    OfficeLocation,
    PreferredLanguage,
    Surname,
    UserPrincipalName,
    Id,
    /// A property of Graph's user that the directory does not keep: `null`
    /// (or `[]` for collections) when selected.
    Unkept(&'static str, bool),
}

/// Graph's default properties, in Graph's order.
const DEFAULT: [(Property, &str); 11] = [
    (Property::BusinessPhones, "businessPhones"),
    (Property::DisplayName, "displayName"),
    (Property::GivenName, "givenName"),
    (Property::JobTitle, "jobTitle"),
    (Property::Mail, "mail"),
    (Property::MobilePhone, "mobilePhone"),
    (Property::OfficeLocation, "officeLocation"),
    (Property::PreferredLanguage, "preferredLanguage"),
    (Property::Surname, "surname"),
    (Property::UserPrincipalName, "userPrincipalName"),
    (Property::Id, "id"),
];

/// Other properties of Graph's user, answered empty; `true`: a collection.
const UNKEPT: [(&str, bool); 16] = [
    ("accountEnabled", false),
    ("city", false),
    ("companyName", false),
    ("country", false),
    ("department", false),
    ("employeeId", false),
    ("faxNumber", false),
    ("imAddresses", true),
    ("mailNickname", false),
    ("otherMails", true),
    ("postalCode", false),
    ("proxyAddresses", true),
    ("state", false),
    ("streetAddress", false),
    ("usageLocation", false),
    ("userType", false),
];

impl Property {
    fn parse(name: &str) -> Option<(Property, &'static str)> {
        if let Some(found) = DEFAULT.iter().find(|(_, n)| n.eq_ignore_ascii_case(name)) {
            return Some(*found);
        }
        UNKEPT
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(n, many)| (Property::Unkept(n, *many), *n))
    }

    /// `User.ReadBasic.All` reads only these.
    fn is_basic(self) -> bool {
        matches!(
            self,
            Property::DisplayName
                | Property::GivenName
                | Property::Mail
                | Property::Surname
                | Property::UserPrincipalName
                | Property::Id
        )
    }

    fn value(self, user: &DirectoryUser, access: UserAccess) -> Value {
        let many = matches!(self, Property::BusinessPhones | Property::Unkept(_, true));
        if access == UserAccess::Basic && !self.is_basic() {
            return if many {
                Value::Array(vec![])
            } else {
                Value::Null
            };
        }
        match self {
            Property::BusinessPhones => Value::from(user.profile.business_phones.clone()),
            Property::Unkept(_, true) => Value::Array(vec![]),
            Property::Unkept(_, false) => Value::Null,
            Property::Id => Value::String(user.id.to_string()),
            _ => text_of(user, self).map_or(Value::Null, |t| Value::String(t.to_owned())),
        }
    }
}

/// A text property's value, `None` when the directory has none.
fn text_of(user: &DirectoryUser, property: Property) -> Option<&str> {
    let p = &user.profile;
    let text = match property {
        Property::DisplayName => Some(user.display_name.as_str()),
        Property::UserPrincipalName => Some(user.user_principal_name.as_str()),
        Property::GivenName => p.given_name.as_deref(),
        Property::Surname => p.surname.as_deref(),
        Property::JobTitle => p.job_title.as_deref(),
        Property::Mail => p.mail.as_deref(),
        Property::MobilePhone => p.mobile_phone.as_deref(),
        Property::OfficeLocation => p.office_location.as_deref(),
        Property::PreferredLanguage => p.preferred_language.as_deref(),
        Property::BusinessPhones | Property::Id | Property::Unkept(..) => None,
    };
    text.filter(|t| !t.is_empty())
}

/// `$select`: the properties asked for, in the order asked.
#[derive(Debug, Clone, Default)]
struct Select(Option<Vec<(Property, &'static str)>>);

impl Select {
    fn parse(text: &str) -> Result<Select, ApiError> {
        let mut chosen: Vec<(Property, &'static str)> = Vec::new();
        for name in text.split(',').map(str::trim) {
            if name == "*" {
                for entry in DEFAULT {
                    if !chosen.iter().any(|(p, _)| *p == entry.0) {
                        chosen.push(entry);
                    }
                }
                continue;
            }
            let entry = Property::parse(name).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "Request_BadRequest",
                    format!(
                        "Could not find a property named '{name}' on type 'microsoft.graph.user'."
                    ),
                )
            })?;
            if !chosen.iter().any(|(p, _)| *p == entry.0) {
                chosen.push(entry);
            }
        }
        Ok(Select(Some(chosen)))
    }

    fn properties(&self) -> &[(Property, &'static str)] {
        self.0.as_deref().unwrap_or(&DEFAULT)
    }

    /// `(displayName,id)` after `#users` when `$select` was given.
    fn write_context(&self, out: &mut String) {
        if let Some(chosen) = &self.0 {
            out.push('(');
            for (i, (_, name)) in chosen.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(name);
            }
            out.push(')');
        }
    }

    fn entries(&self, user: &DirectoryUser, access: UserAccess) -> Vec<(&'static str, Value)> {
        self.properties()
            .iter()
            .map(|(property, name)| (*name, property.value(user, access)))
            .collect()
    }
}

/// A JSON object whose members keep their order.
struct Ordered<'a>(Vec<(&'a str, Value)>);

impl Serialize for Ordered<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Graph's largest and default page sizes for users.
const MAX_TOP: usize = 999;
const DEFAULT_TOP: usize = 100;

/// The query options of a directory read.
#[derive(Debug, Default)]
struct Query {
    select: Select,
    top: usize,
    skip: usize,
    filter: Option<Filter>,
    search: Option<Search>,
    count: Option<bool>,
    order_by: Option<(Property, bool)>,
}

impl Query {
    fn parse(query: Option<&str>) -> Result<Query, ApiError> {
        let mut parsed = Query {
            top: DEFAULT_TOP,
            ..Query::default()
        };
        let mut seen: Vec<String> = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode_str(name)
                .decode_utf8_lossy()
                .to_ascii_lowercase();
            let value = percent_decode_str(&value.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned();
            let option = name.strip_prefix('$').unwrap_or(&name).to_owned();
            let known = [
                "select",
                "top",
                "filter",
                "search",
                "count",
                "orderby",
                "skiptoken",
            ];
            if !known.contains(&option.as_str()) {
                // Other options ($expand, $format...) are not served; Graph
                // apps send them rarely, and ignoring them keeps reads working.
                continue;
            }
            if seen.contains(&option) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "Request_BadRequest",
                    format!(
                        "Query option '${option}' was specified more than once; it must be specified at most once."
                    ),
                ));
            }
            seen.push(option.clone());
            match option.as_str() {
                "select" => parsed.select = Select::parse(&value)?,
                "top" => {
                    parsed.top = value
                        .trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_TOP).contains(n))
                        .ok_or_else(|| {
                            ApiError::new(
                                StatusCode::BAD_REQUEST,
                                "Request_BadRequest",
                                format!("Invalid page size specified: '{value}'. Must be between 1 and {MAX_TOP} inclusive."),
                            )
                        })?;
                }
                "filter" => parsed.filter = Some(Filter::parse(&value)?),
                "search" => parsed.search = Some(Search::parse(&value)?),
                "count" => {
                    parsed.count = Some(match value.trim().to_ascii_lowercase().as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(ApiError::new(
                                StatusCode::BAD_REQUEST,
                                "Request_BadRequest",
                                format!(
                                    "'{value}' is not a valid value for $count: use true or false."
                                ),
                            ));
                        }
                    });
                }
                "orderby" => parsed.order_by = Some(parse_order_by(&value)?),
                _ => {
                    parsed.skip = parse_skip_token(value.trim()).ok_or_else(|| {
                        ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "Request_BadRequest",
                            "The $skiptoken is not valid: use the @odata.nextLink of a previous page as it is.",
                        )
                    })?;
                }
            }
        }
        Ok(parsed)
    }
}

fn unsupported(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", message)
}

fn parse_order_by(text: &str) -> Result<(Property, bool), ApiError> {
    let mut words = text.split_whitespace();
    let property = words.next().unwrap_or("");
    let descending = match words.next().map(str::to_ascii_lowercase).as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return Err(unsupported(format!("'{text}' is not a valid $orderby."))),
    };
    match Property::parse(property) {
        Some((p @ (Property::DisplayName | Property::UserPrincipalName), _))
            if words.next().is_none() =>
        {
            Ok((p, descending))
        }
        _ => Err(unsupported(format!(
            "Sorting by '{text}' is not supported: order users by displayName or userPrincipalName."
        ))),
    }
}

fn unicase_eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b) || a.to_lowercase() == b.to_lowercase()
}

fn starts_with_ignoring_case(text: &str, prefix: &str) -> bool {
    text.to_lowercase().starts_with(&prefix.to_lowercase())
}

/// `$filter` on users: `startswith(p,'x')`, `p eq 'x'`, `p in ('x','y')`,
/// joined with `and`, `or` and parentheses.
#[derive(Debug, Clone, PartialEq)]
enum Filter {
    StartsWith(Property, String),
    Eq(Property, String),
    In(Property, Vec<String>),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
}

impl Filter {
    fn parse(text: &str) -> Result<Filter, ApiError> {
        let tokens = tokenize(text)?;
        let mut parser = Parser { tokens, pos: 0 };
        let filter = parser.or()?;
        if parser.pos != parser.tokens.len() {
            return Err(invalid_filter(text));
        }
        Ok(filter)
    }

    fn matches(&self, user: &DirectoryUser) -> bool {
        let value = |p: Property| match p {
            Property::Id => Some(user.id.to_string()),
            other => text_of(user, other).map(str::to_owned),
        };
        match self {
            Filter::StartsWith(p, prefix) => {
                value(*p).is_some_and(|v| starts_with_ignoring_case(&v, prefix))
            }
            Filter::Eq(p, wanted) => value(*p).is_some_and(|v| unicase_eq(&v, wanted)),
            Filter::In(p, wanted) => {
                value(*p).is_some_and(|v| wanted.iter().any(|w| unicase_eq(&v, w)))
            }
            Filter::And(a, b) => a.matches(user) && b.matches(user),
            Filter::Or(a, b) => a.matches(user) || b.matches(user),
        }
    }
}

fn invalid_filter(text: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        format!(
            "Invalid filter clause: '{text}' is not a filter presenced understands (startswith(property,'x'), property eq 'x', property in ('x','y'), with and, or and parentheses)."
        ),
    )
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Open,
    Close,
    Comma,
}

fn tokenize(text: &str) -> Result<Vec<Token>, ApiError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                tokens.push(Token::Open);
            }
            ')' => {
                chars.next();
                tokens.push(Token::Close);
            }
            ',' => {
                chars.next();
                tokens.push(Token::Comma);
            }
            '\'' => {
                chars.next();
                let mut literal = String::new();
                loop {
                    match chars.next() {
                        None => return Err(invalid_filter(text)),
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            literal.push('\'');
                        }
                        Some('\'') => break,
                        Some(c) => literal.push(c),
                    }
                }
                tokens.push(Token::Text(literal));
            }
            c if c.is_alphanumeric() || c == '_' || c == '.' || c == '/' || c == '-' => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_alphanumeric() || c == '_' || c == '.' || c == '/' || c == '-' {
                        word.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(Token::Word(word));
            }
            _ => return Err(invalid_filter(text)),
        }
        if tokens.len() > 2000 {
            return Err(invalid_filter(text));
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

/// How deep parentheses may nest in a filter.
const MAX_DEPTH: usize = 32;

impl Parser {
    fn peek_word(&self, word: &str) -> bool {
        matches!(self.tokens.get(self.pos), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        token
    }

    fn expect(&mut self, token: Token) -> Result<(), ApiError> {
        if self.next() == Some(token) {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    fn error(&self) -> ApiError {
        let text: Vec<String> = self
            .tokens
            .iter()
            .map(|t| match t {
                Token::Word(w) => w.clone(),
                Token::Text(t) => format!("'{}'", t.replace('\'', "''")),
                Token::Open => "(".into(),
                Token::Close => ")".into(),
                Token::Comma => ",".into(),
            })
            .collect();
        invalid_filter(&text.join(" "))
    }

    fn or(&mut self) -> Result<Filter, ApiError> {
        self.or_at(0)
    }

    fn or_at(&mut self, depth: usize) -> Result<Filter, ApiError> {
        let mut filter = self.and_at(depth)?;
        while self.peek_word("or") {
            self.pos += 1;
            filter = Filter::Or(Box::new(filter), Box::new(self.and_at(depth)?));
        }
        Ok(filter)
    }

    fn and_at(&mut self, depth: usize) -> Result<Filter, ApiError> {
        let mut filter = self.term(depth)?;
        while self.peek_word("and") {
            self.pos += 1;
            filter = Filter::And(Box::new(filter), Box::new(self.term(depth)?));
        }
        Ok(filter)
    }

    fn property(&self, name: &str) -> Result<Property, ApiError> {
        match Property::parse(name) {
            Some((
                p @ (Property::Id
                | Property::DisplayName
                | Property::UserPrincipalName
                | Property::Mail
                | Property::GivenName
                | Property::Surname
                | Property::JobTitle),
                _,
            )) => Ok(p),
            _ => Err(unsupported(format!(
                "Unsupported or invalid query filter clause specified for property '{name}' of resource 'User'."
            ))),
        }
    }

    fn text(&mut self) -> Result<String, ApiError> {
        match self.next() {
            Some(Token::Text(text)) => Ok(text),
            _ => Err(self.error()),
        }
    }

    fn term(&mut self, depth: usize) -> Result<Filter, ApiError> {
        match self.next() {
            Some(Token::Open) if depth < MAX_DEPTH => {
                let inner = self.or_at(depth + 1)?;
                self.expect(Token::Close)?;
                Ok(inner)
            }
            Some(Token::Word(word)) if word.eq_ignore_ascii_case("startswith") => {
                self.expect(Token::Open)?;
                let Some(Token::Word(name)) = self.next() else {
                    return Err(self.error());
                };
                let property = self.property(&name)?;
                if property == Property::Id {
                    return Err(unsupported(
                        "Unsupported or invalid query filter clause specified for property 'id' of resource 'User'.",
                    ));
                }
                self.expect(Token::Comma)?;
                let prefix = self.text()?;
                self.expect(Token::Close)?;
                Ok(Filter::StartsWith(property, prefix))
            }
            Some(Token::Word(name)) => {
                let property = self.property(&name)?;
                if self.peek_word("eq") {
                    self.pos += 1;
                    return Ok(Filter::Eq(property, self.text()?));
                }
                if self.peek_word("in") {
                    self.pos += 1;
                    self.expect(Token::Open)?;
                    let mut values = vec![self.text()?];
                    loop {
                        match self.next() {
                            Some(Token::Comma) => values.push(self.text()?),
                            Some(Token::Close) => break,
                            _ => return Err(self.error()),
                        }
                    }
                    if values.len() > 15 && property != Property::Id {
                        return Err(unsupported(
                            "Too many values in an 'in' clause: at most 15 are allowed.",
                        ));
                    }
                    return Ok(Filter::In(property, values));
                }
                Err(unsupported(format!(
                    "Unsupported or invalid query filter clause specified for property '{name}' of resource 'User'."
                )))
            }
            _ => Err(self.error()),
        }
    }
}

/// `$search="displayName:ad" OR "mail:lee"`: a clause matches a user when
/// a word of the property starts with its text, ignoring case.
#[derive(Debug, Clone, PartialEq)]
struct Search {
    /// Clauses joined by `OR`; each a list joined by `AND`.
    any_of: Vec<Vec<(Property, String)>>,
}

impl Search {
    fn parse(text: &str) -> Result<Search, ApiError> {
        let bad = || {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "Request_UnsupportedQuery",
                format!(
                    "Invalid $search '{text}': write \"property:text\" clauses (displayName, givenName, surname, mail, userPrincipalName, jobTitle) joined by AND or OR."
                ),
            )
        };
        let mut any_of = vec![Vec::new()];
        let mut rest = text.trim();
        let mut expect_clause = true;
        while !rest.is_empty() {
            if expect_clause {
                let inner = rest.strip_prefix('"').ok_or_else(bad)?;
                let end = inner.find('"').ok_or_else(bad)?;
                let (name, value) = inner[..end].split_once(':').ok_or_else(bad)?;
                let property = match Property::parse(name.trim()) {
                    Some((
                        p @ (Property::DisplayName
                        | Property::GivenName
                        | Property::Surname
                        | Property::Mail
                        | Property::UserPrincipalName
                        | Property::JobTitle),
                        _,
                    )) => p,
                    _ => return Err(bad()),
                };
                any_of
                    .last_mut()
                    .expect("one group at least")
                    .push((property, value.trim().to_lowercase()));
                rest = inner[end + 1..].trim_start();
                expect_clause = false;
            } else {
                let (word, after) = rest.split_once(char::is_whitespace).ok_or_else(bad)?;
                match word {
                    "OR" => any_of.push(Vec::new()),
                    "AND" => {}
                    _ => return Err(bad()),
                }
                rest = after.trim_start();
                expect_clause = true;
            }
        }
        if expect_clause || any_of.len() > 50 {
            return Err(bad());
        }
        Ok(Search { any_of })
    }

    fn matches(&self, user: &DirectoryUser) -> bool {
        self.any_of.iter().any(|all| {
            all.iter().all(|(property, wanted)| {
                text_of(user, *property).is_some_and(|value| {
                    let value = value.to_lowercase();
                    value.starts_with(wanted.as_str())
                        || value
                            .split(|c: char| c.is_whitespace() || "@.-_".contains(c))
                            .any(|word| word.starts_with(wanted.as_str()))
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use presenced_store::UserProfile;

    fn user(n: u128, upn: &str, name: &str) -> DirectoryUser {
        DirectoryUser {
            id: Guid::from_u128(n),
            user_principal_name: upn.into(),
            display_name: name.into(),
            profile: UserProfile {
                mail: Some(upn.into()),
                job_title: Some("Engineer".into()),
                ..UserProfile::default()
            },
        }
    }

    #[test]
    fn paths_are_recognised() {
        let check = |path: &str, route: Option<UserRoute>| {
            assert_eq!(parse(path).map(|(_, r)| r), route, "{path}");
        };
        check("/v1.0/me", Some(UserRoute::Me));
        check("/beta/ME", Some(UserRoute::Me));
        check("/v1.0/users", Some(UserRoute::List));
        check("/v1.0/users/$count", Some(UserRoute::Count));
        check("/v1.0/users/%24count", Some(UserRoute::Count));
        check(
            "/v1.0/users/adele%40contoso.com",
            Some(UserRoute::User("adele@contoso.com".into())),
        );
        check("/v1.0/me/photo/$value", Some(UserRoute::Photo(None)));
        check(
            "/v1.0/users/x/photo/%24value",
            Some(UserRoute::Photo(Some("x".into()))),
        );
        check("/v1.0/users/", None);
        check("/v1.0/users/x/manager", None);
        check("/v1.0/me/presence", None);
    }

    #[test]
    fn filters_parse_and_match_ignoring_case() {
        let adele = user(1, "adele.vance@contoso.com", "Adele Vance");
        let lee = user(2, "lee.gu@contoso.com", "Lee Gu");
        let matching = |text: &str| -> Vec<u128> {
            let filter = Filter::parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            [&adele, &lee]
                .iter()
                .filter(|u| filter.matches(u))
                .map(|u| u.id.as_u128())
                .collect()
        };
        assert_eq!(matching("startswith(displayName,'ad')"), [1]);
        assert_eq!(matching("startsWith(userPrincipalName, 'LEE')"), [2]);
        assert_eq!(
            matching("startswith(displayName,'a') or startswith(displayName,'l')"),
            [1, 2]
        );
        assert_eq!(
            matching(&format!(
                "id in ('{}','{}')",
                Guid::from_u128(2),
                Guid::from_u128(9)
            )),
            [2]
        );
        assert_eq!(matching("mail eq 'ADELE.VANCE@contoso.com'"), [1]);
        assert_eq!(
            matching(
                "(startswith(displayName,'a') or displayName eq 'Lee Gu') and jobTitle eq 'engineer'"
            ),
            [1, 2]
        );
        assert_eq!(matching("displayName eq 'it''s'"), Vec::<u128>::new());
        for bad in [
            "",
            "startswith(displayName)",
            "displayName eq",
            "displayName ne 'x'",
            "startswith(displayName,'a'",
            "id in ()",
            "displayName eq 'open",
            "department eq 'x'",
            "startswith(id,'1')",
            "a eq 'b' c",
            &"(".repeat(100),
        ] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn searches_match_words_by_prefix() {
        let adele = user(1, "adele.vance@contoso.com", "Adele Vance");
        let search = Search::parse("\"displayName:van\"").unwrap();
        assert!(search.matches(&adele));
        let search = Search::parse("\"displayName:gu\" OR \"mail:adele\"").unwrap();
        assert!(search.matches(&adele));
        let search = Search::parse("\"displayName:adele\" AND \"mail:lee\"").unwrap();
        assert!(!search.matches(&adele));
        for bad in [
            "displayName:x",
            "\"displayName:x",
            "\"x\"",
            "\"a:b\" OR",
            "\"displayName:x\" XOR \"mail:y\"",
        ] {
            assert!(Search::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn skip_tokens_round_trip_and_bad_ones_are_refused() {
        assert_eq!(parse_skip_token(&skip_token(40)), Some(40));
        assert_eq!(parse_skip_token("nonsense"), None);
        assert_eq!(parse_skip_token(""), None);
    }

    #[test]
    fn select_keeps_the_order_asked_and_refuses_unknown_properties() {
        let select = Select::parse("id,DISPLAYNAME,department").unwrap();
        let mut context = String::new();
        select.write_context(&mut context);
        assert_eq!(context, "(id,displayName,department)");
        let adele = user(1, "a@b", "Adele");
        let entries = select.entries(&adele, UserAccess::Full);
        assert_eq!(entries[0].0, "id");
        assert_eq!(entries[2], ("department", Value::Null));
        assert!(Select::parse("id,shoeSize").is_err());
    }

    #[test]
    fn basic_access_reads_only_the_basic_properties() {
        let adele = user(1, "a@b", "Adele");
        let entries: std::collections::HashMap<_, _> = Select::default()
            .entries(&adele, UserAccess::Basic)
            .into_iter()
            .collect();
        assert_eq!(entries["displayName"], "Adele");
        assert_eq!(entries["mail"], "a@b");
        assert_eq!(entries["jobTitle"], Value::Null);
        assert_eq!(entries["businessPhones"], Value::Array(vec![]));
    }
}
