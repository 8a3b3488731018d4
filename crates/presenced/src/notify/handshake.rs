//! The validation handshake (fact sheet §4.2): before a subscription exists,
//! its `notificationUrl` (and `lifecycleNotificationUrl`) must echo a token.
//!
//! presenced sends `POST {url}?validationToken={token}` with
//! `Content-Type: text/plain; charset=utf-8`; the receiver must answer `200`
//! with the URL-decoded token as its body within the handshake timeout
//! (10 seconds by default).

use std::time::Duration;

use reqwest::Url;

use super::outbound::read_bounded;

/// Why an endpoint failed the handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("the endpoint did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the endpoint could not be reached: {0}")]
    Unreachable(String),
    #[error("the endpoint answered {0} instead of 200 OK")]
    Status(u16),
    #[error("the endpoint did not echo the validation token")]
    WrongToken,
}

/// Runs the handshake against `url` with a fresh token.
pub async fn validate(
    client: &reqwest::Client,
    url: &Url,
    timeout: Duration,
) -> Result<(), HandshakeError> {
    let token = format!("Validation: presenced {}", uuid::Uuid::new_v4());
    let mut target = url.clone();
    target
        .query_pairs_mut()
        .append_pair("validationToken", &token);
    let call = async {
        let response = client
            .post(target)
            .header("content-type", "text/plain; charset=utf-8")
            .body(Vec::new())
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    HandshakeError::Timeout(timeout)
                } else {
                    HandshakeError::Unreachable(error_chain(&e))
                }
            })?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(HandshakeError::Status(response.status().as_u16()));
        }
        let body = read_bounded(response, token.len() + 64).await;
        if body.trim_ascii() == token.as_bytes() {
            Ok(())
        } else {
            Err(HandshakeError::WrongToken)
        }
    };
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or(Err(HandshakeError::Timeout(timeout)))
}

/// An error with its causes, for messages.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
