//! The JSON of webhook payloads (fact sheet §4.4, §4.5).
//!
//! This is the one place outside `api` that writes Graph JSON: webhook
//! payloads are presenced's outbound wire format, built when a change is
//! fanned out and stored in the outbox until delivered, so they are made
//! here rather than by the request-serving layer.

use jiff::Timestamp;
use presenced_domain::{Activity, Availability, Guid};
use serde_json::{Value, json};

use super::crypto::EncryptedContent;

use super::subscription::{MAX_IDS, Subscription};

/// An instant as Graph writes them: seven fractional digits and `Z`.
pub fn graph_instant(at: Timestamp) -> String {
    let whole = at.strftime("%Y-%m-%dT%H:%M:%S");
    let fraction = at.subsec_nanosecond().rem_euclid(1_000_000_000) / 100;
    format!("{whole}.{fraction:07}Z")
}

/// One change notification (basic: no presence data; rich notifications
/// add `encryptedContent`).
///
/// `resource` is the subscription's, as Graph sends it; for a subscription
/// of more than 650 ids (an extension) it names the one user instead
/// (`communications/presences/{id}`), so that each notification does not
/// carry the whole id list.
pub fn change_item(subscription: &Subscription, user: Guid) -> Value {
    let id = user.to_string();
    let resource = if subscription.users.len() > MAX_IDS {
        format!("communications/presences/{id}")
    } else {
        subscription.resource.clone()
    };
    let mut item = json!({
        "subscriptionId": subscription.id.to_string(),
        "changeType": "updated",
        "tenantId": subscription.tenant.to_string(),
        "clientState": subscription.client_state,
        "subscriptionExpirationDateTime": graph_instant(subscription.expires()),
        "resource": resource,
        "resourceData": {
            "@odata.id": format!("users/{id}/presence"),
            "@odata.type": "#microsoft.graph.presence",
            "id": id,
        },
        "organizationId": subscription.tenant.to_string(),
    });
    if subscription.client_state.is_none()
        && let Some(map) = item.as_object_mut()
    {
        map.remove("clientState");
    }
    item
}

/// The resource a rich notification carries, before encryption.
pub fn presence_resource(user: Guid, availability: Availability, activity: Activity) -> Vec<u8> {
    let id = user.to_string();
    let body = json!({
        "@odata.id": format!("users/{id}/presence"),
        "@odata.type": "#microsoft.graph.presence",
        "id": id,
        "availability": availability.as_str(),
        "activity": activity.as_str(),
    });
    serde_json::to_vec(&body).expect("JSON values serialise")
}

/// Adds `encryptedContent` to a change notification.
pub fn add_encrypted_content(
    item: &mut Value,
    content: &EncryptedContent,
    certificate_id: &str,
    thumbprint: &str,
) {
    if let Some(map) = item.as_object_mut() {
        map.insert(
            "encryptedContent".into(),
            json!({
                "data": content.data,
                "dataSignature": content.data_signature,
                "dataKey": content.data_key,
                "encryptionCertificateId": certificate_id,
                "encryptionCertificateThumbprint": thumbprint,
            }),
        );
    }
}

/// A lifecycle notification.
pub fn lifecycle_item(
    subscription: Guid,
    tenant: Guid,
    expires: Timestamp,
    client_state: Option<&str>,
    event: &str,
) -> Value {
    let mut item = json!({
        "subscriptionId": subscription.to_string(),
        "subscriptionExpirationDateTime": graph_instant(expires),
        "tenantId": tenant.to_string(),
        "organizationId": tenant.to_string(),
        "lifecycleEvent": event,
    });
    if let (Some(state), Some(map)) = (client_state, item.as_object_mut()) {
        map.insert("clientState".into(), Value::String(state.to_owned()));
    }
    item
}

/// A `changeNotificationCollection`.
pub fn collection(items: Vec<Value>, validation_tokens: Vec<String>) -> Vec<u8> {
    let mut body = json!({ "value": items });
    if !validation_tokens.is_empty()
        && let Some(map) = body.as_object_mut()
    {
        map.insert("validationTokens".into(), json!(validation_tokens));
    }
    serde_json::to_vec(&body).expect("JSON values serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_have_seven_fractional_digits() {
        let at: Timestamp = "2023-09-14T10:00:00.123456789Z".parse().unwrap();
        assert_eq!(graph_instant(at), "2023-09-14T10:00:00.1234567Z");
        let at: Timestamp = "2023-09-14T10:00:00Z".parse().unwrap();
        assert_eq!(graph_instant(at), "2023-09-14T10:00:00.0000000Z");
    }
}
