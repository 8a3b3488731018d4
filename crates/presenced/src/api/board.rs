//! The presence board: a page at `/` for people, served from files embedded
//! in the binary (`crates/presenced/board/`), vanilla JavaScript with no
//! build step. The page signs in through the built-in identity provider as
//! the board client ([`presenced_identity::BOARD_APP_ID`]) and then uses the
//! Graph API like any other client; this module only serves its files.
//!
//! `GET /` gives the page to browsers (`Accept` naming `text/html`); API
//! clients keep Graph's 404 there. Assets live under `/board/`; an unknown
//! one is Graph's 404 too. Every file is sent with its content type, an
//! `ETag` (`If-None-Match` answers 304), `Cache-Control: no-cache` (the
//! browser revalidates, so an upgraded server is picked up at once) and a
//! Content-Security-Policy that lets the page load and call nothing but its
//! own origin.

use std::sync::LazyLock;

use axum::extract::{Path, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::RouteName;
use super::error::ApiError;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: [Asset; 4] = [
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../board/index.html"),
    },
    Asset {
        name: "board.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../board/board.js"),
    },
    Asset {
        name: "board.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../board/board.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../board/icon.svg"),
    },
];

/// Each asset's `ETag`, in the order of [`ASSETS`]: a digest of its bytes.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let digest = Sha256::digest(asset.body);
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a header value")
        })
        .collect()
});

/// Self only: scripts, styles, images and calls from the page's own origin;
/// no inline script, no frames, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// `GET /`: the board for browsers, Graph's 404 for API clients.
pub async fn index(request: Request) -> Response {
    let wants_html = request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/html"));
    let mut response = if wants_html {
        serve(0, request.headers())
    } else {
        ApiError::for_status(StatusCode::NOT_FOUND).into_response()
    };
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    response.extensions_mut().insert(RouteName("/"));
    response
}

/// `GET /board/{file}`.
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let mut response = match ASSETS.iter().position(|a| a.name == file) {
        Some(index) => serve(index, &headers),
        None => ApiError::not_found(format!("The board has no file '{file}'.")).into_response(),
    };
    response.extensions_mut().insert(RouteName("/board/{file}"));
    response
}

fn serve(index: usize, request: &HeaderMap) -> Response {
    let asset = &ASSETS[index];
    let etag = &ETAGS[index];
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag.as_bytes() == etag.as_bytes());
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, asset.body).into_response()
    };
    let headers = response.headers_mut();
    if !fresh {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
    }
    headers.insert(header::ETAG, etag.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The sign-in's code comes back in the fragment; no URL of the page is
    // ever sent elsewhere.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
