//! Graph's wire format: request bodies in, presence JSON out.
//!
//! Wire types are not domain types. Request bodies deserialize into the
//! loose shapes below (every field optional, unknown fields ignored), then
//! convert once into validated domain values; the presence JSON is written
//! from a [`PresenceView`] by a hand-written `Serialize` that honours `$select`.

use std::borrow::Cow;

use jiff::Timestamp;
use presenced_domain::{PresenceView, StatusMessage};
use serde::Deserialize;
use utoipa::ToSchema;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = SetPresenceRequest)]
pub struct SetPresenceBody {
    /// The app session: the calling app's id (application tokens) or any id.
    #[schema(value_type = String)]
    pub session_id: Option<String>,
    #[schema(value_type = super::openapi::AvailabilityDoc)]
    pub availability: Option<String>,
    #[schema(value_type = super::openapi::ActivityDoc)]
    pub activity: Option<String>,
    /// ISO 8601, `PT5M` to `PT4H`; 5 minutes when left out.
    pub expiration_duration: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ClearPresenceRequest)]
pub struct ClearPresenceBody {
    #[schema(value_type = String)]
    pub session_id: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = SetUserPreferredPresenceRequest)]
pub struct SetPreferredBody {
    #[schema(value_type = super::openapi::AvailabilityDoc)]
    pub availability: Option<String>,
    #[schema(value_type = super::openapi::ActivityDoc)]
    pub activity: Option<String>,
    /// ISO 8601; until cleared (or 1 day for `Offline`) when left out.
    pub expiration_duration: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = SetStatusMessageRequest)]
pub struct SetStatusMessageBody {
    /// Absent and `null` differ: absent is an error, `null` clears.
    #[serde(default, deserialize_with = "present_object")]
    #[schema(value_type = Option<StatusMessageBody>)]
    pub status_message: Option<Option<StatusMessageBody>>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = StatusMessageInput)]
pub struct StatusMessageBody {
    #[serde(default, deserialize_with = "object")]
    pub message: Option<ItemBody>,
    #[serde(default, deserialize_with = "object")]
    pub expiry_date_time: Option<DateTimeTimeZone>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ItemBodyInput)]
pub struct ItemBody {
    pub content: Option<String>,
    pub content_type: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DateTimeTimeZoneInput)]
pub struct DateTimeTimeZone {
    pub date_time: Option<String>,
    pub time_zone: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = LocationRequest)]
pub struct LocationBody {
    #[schema(value_type = super::openapi::WorkLocationTypeDoc)]
    pub work_location_type: Option<String>,
    pub place_id: Option<String>,
}

/// Borrows the ids from the request body where it can (an id without escapes,
/// which every GUID is): a bulk read parses up to 650 of them.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = GetPresencesByUserIdRequest)]
pub struct IdsBody<'a> {
    /// User object ids (GUIDs), 1 to 650.
    #[schema(value_type = Vec<String>)]
    #[serde(borrow)]
    pub ids: Option<Vec<Cow<'a, str>>>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = OutOfOfficeRequest)]
pub struct OutOfOfficeBody {
    #[schema(value_type = bool)]
    pub is_out_of_office: Option<bool>,
    pub message: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = ClockAdvanceRequest)]
pub struct ClockBody {
    /// An ISO 8601 duration, e.g. `PT5M`.
    #[schema(value_type = String)]
    pub advance: Option<String>,
}

/// A nested object, or `null`. serde's derived `Deserialize` of a struct also
/// takes a JSON array of the fields' values (`[null, null]`), which Graph
/// refuses: only an object is read.
fn object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    Option::<serde_json::Map<String, serde_json::Value>>::deserialize(deserializer)?
        .map(|fields| T::deserialize(serde_json::Value::Object(fields)))
        .transpose()
        .map_err(serde::de::Error::custom)
}

/// [`object`], telling a field sent as `null` (`Some(None)`) from one left out (`None`).
fn present_object<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    object(deserializer).map(Some)
}

/// The presence properties, in the order Graph writes them; `$select` picks among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Property {
    Id,
    Availability,
    Activity,
    StatusMessage,
    OutOfOfficeSettings,
    WorkLocation,
    SequenceNumber,
}

impl Property {
    pub const ALL: [Property; 7] = [
        Property::Id,
        Property::Availability,
        Property::Activity,
        Property::StatusMessage,
        Property::OutOfOfficeSettings,
        Property::WorkLocation,
        Property::SequenceNumber,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Property::Id => "id",
            Property::Availability => "availability",
            Property::Activity => "activity",
            Property::StatusMessage => "statusMessage",
            Property::OutOfOfficeSettings => "outOfOfficeSettings",
            Property::WorkLocation => "workLocation",
            Property::SequenceNumber => "sequenceNumber",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// Which properties a response carries (`$select`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    bits: u8,
    /// The `$select` text as it should appear in `@odata.context`.
    pub explicit: bool,
}

impl Selection {
    pub const ALL: Selection = Selection {
        bits: 0x7f,
        explicit: false,
    };

    /// Parses a `$select` value: comma-separated property names (any case) or `*`.
    pub fn parse(text: &str) -> Result<Selection, String> {
        let mut bits = 0;
        for item in text.split(',').map(str::trim) {
            if item == "*" {
                bits |= Selection::ALL.bits;
                continue;
            }
            let property = Property::ALL
                .into_iter()
                .find(|p| p.name().eq_ignore_ascii_case(item))
                .ok_or_else(|| {
                    format!("Could not find a property named '{item}' on type 'microsoft.graph.presence'.")
                })?;
            bits |= property.bit();
        }
        Ok(Selection {
            bits,
            explicit: true,
        })
    }

    pub fn has(self, property: Property) -> bool {
        self.bits & property.bit() != 0
    }

    /// `(availability,activity)` for `@odata.context`, in property order.
    pub fn context_suffix(self) -> String {
        if !self.explicit || self.bits == Selection::ALL.bits {
            return String::new();
        }
        let names: Vec<&str> = Property::ALL
            .into_iter()
            .filter(|p| self.has(*p))
            .map(Property::name)
            .collect();
        format!("({})", names.join(","))
    }
}

/// Who reads a presence: the user themself sees the status message's dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    Owner,
    Other,
}

/// One presence as Graph writes it.
pub struct PresenceJson<'a> {
    pub context: Option<&'a str>,
    pub id: &'a str,
    pub view: &'a PresenceView<'a>,
    pub selection: Selection,
    pub viewer: Viewer,
}

impl PresenceJson<'_> {
    /// Appends the presence's JSON to `out`, properties in Graph's order.
    ///
    /// Written directly rather than through serde: names, enum values, ids,
    /// sequence numbers and timestamps never need escaping, so only the
    /// free text (status message, out-of-office message, place id, time
    /// zone, `@odata.context`) goes through the JSON string escaper. A bulk
    /// read writes 650 of these.
    pub fn write(&self, out: &mut Vec<u8>) {
        let view = self.view;
        let has = |p| self.selection.has(p);
        let mut fields = Fields::open(out);
        if let Some(context) = self.context {
            fields.name("@odata.context").text(context);
        }
        if has(Property::Id) {
            fields.name("id").plain(self.id);
        }
        if has(Property::Availability) {
            fields
                .name("availability")
                .plain(view.availability.as_str());
        }
        if has(Property::Activity) {
            fields.name("activity").plain(view.activity.as_str());
        }
        if has(Property::StatusMessage) {
            let out = fields.name("statusMessage");
            match view.status_message {
                None => out.null(),
                Some(message) => write_status_message(out.0, message, self.viewer),
            }
        }
        if has(Property::OutOfOfficeSettings) {
            let out = fields.name("outOfOfficeSettings");
            let mut inner = Fields::open(out.0);
            inner
                .name("message")
                .optional_text(view.out_of_office_message);
            inner.name("isOutOfOffice").raw(if view.is_out_of_office {
                "true"
            } else {
                "false"
            });
            inner.close();
        }
        if has(Property::WorkLocation) {
            let out = fields.name("workLocation");
            let mut inner = Fields::open(out.0);
            inner
                .name("workLocationType")
                .plain(view.work_location_type.as_str());
            inner
                .name("source")
                .plain(view.work_location_source.as_str());
            inner.name("placeId").optional_text(view.place_id);
            inner.close();
        }
        if has(Property::SequenceNumber) {
            let out = fields.name("sequenceNumber");
            out.0.extend_from_slice(b"\"A");
            out.0.extend_from_slice(&sequence_digits(view.sequence));
            out.0.push(b'"');
        }
        fields.close();
    }
}

fn write_status_message(out: &mut Vec<u8>, message: &StatusMessage, viewer: Viewer) {
    let mut fields = Fields::open(out);
    {
        let out = fields.name("message");
        let mut item = Fields::open(out.0);
        item.name("content").text(&message.content);
        item.name("contentType").plain("text");
        item.close();
    }
    if viewer == Viewer::Owner {
        fields
            .name("publishedDateTime")
            .plain(&graph_timestamp(message.published_at));
        if let Some(expiry) = &message.expiry {
            let out = fields.name("expiryDateTime");
            let mut inner = Fields::open(out.0);
            inner.name("dateTime").plain(
                &expiry
                    .date_time
                    .strftime("%Y-%m-%dT%H:%M:%S%.7f")
                    .to_string(),
            );
            inner.name("timeZone").text(&expiry.time_zone);
            inner.close();
        }
    }
    fields.close();
}

/// A JSON object being written: `{`, then `"name":value` pairs with commas.
struct Fields<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

/// Where one field's value goes.
struct Value<'b>(&'b mut Vec<u8>);

impl<'a> Fields<'a> {
    fn open(out: &'a mut Vec<u8>) -> Fields<'a> {
        out.push(b'{');
        Fields { out, first: true }
    }

    /// Starts a field; `name` must need no escaping.
    fn name(&mut self, name: &str) -> Value<'_> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
        Value(self.out)
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

impl Value<'_> {
    /// A string known to need no escaping (ASCII letters, digits and
    /// punctuation other than `"` and `\\`).
    fn plain(self, text: &str) {
        debug_assert!(
            text.bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        );
        self.0.push(b'"');
        self.0.extend_from_slice(text.as_bytes());
        self.0.push(b'"');
    }

    /// Any string, escaped as JSON requires.
    fn text(self, text: &str) {
        // Writing to a Vec cannot fail, and a str is always valid JSON text.
        let _ = serde_json::to_writer(&mut *self.0, text);
    }

    fn optional_text(self, text: Option<&str>) {
        match text {
            Some(text) => self.text(text),
            None => self.null(),
        }
    }

    fn raw(self, json: &str) {
        self.0.extend_from_slice(json.as_bytes());
    }

    fn null(self) {
        self.raw("null");
    }
}

/// `sequenceNumber`: a letter, as in Graph's examples, then the domain's
/// fixed-width digits, so byte order is numeric order.
pub fn sequence_number(sequence: u64) -> String {
    format!(
        "A{}",
        presenced_domain::view::sequence_number_text(sequence)
    )
}

/// The domain's 20 fixed-width digits of `sequence`, without formatting
/// machinery (every presence written carries one).
fn sequence_digits(mut sequence: u64) -> [u8; 20] {
    let mut digits = [b'0'; 20];
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (sequence % 10) as u8;
        sequence /= 10;
    }
    digits
}

/// A UTC instant as Graph writes `DateTimeOffset`: 7 fractional digits and `Z`.
pub fn graph_timestamp(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.7fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_accepts_names_in_any_case_and_star() {
        let s = Selection::parse("availability,ACTIVITY").unwrap();
        assert!(s.has(Property::Availability) && s.has(Property::Activity) && !s.has(Property::Id));
        assert_eq!(s.context_suffix(), "(availability,activity)");
        assert_eq!(Selection::parse("*").unwrap().context_suffix(), "");
    }

    #[test]
    fn select_of_an_unknown_property_is_refused() {
        assert!(
            Selection::parse("availability,mood")
                .unwrap_err()
                .contains("'mood'")
        );
    }

    #[test]
    fn presence_json_is_escaped_where_text_is_free_and_follows_select_and_viewer() {
        use presenced_domain::{
            Activity, Availability, StatusExpiry, WorkLocationSource, WorkLocationType,
        };
        let message = StatusMessage {
            content: "Back at \"2\" \\ caf\u{e9}\n".to_owned(),
            published_at: "2026-08-27T09:14:22.9411568Z".parse().unwrap(),
            expiry: Some(StatusExpiry {
                date_time: "2026-08-28T17:00:00".parse().unwrap(),
                time_zone: "Pacific Standard Time".to_owned(),
                at: "2026-08-29T00:00:00Z".parse().unwrap(),
            }),
        };
        let view = PresenceView {
            availability: Availability::parse("Busy").unwrap(),
            activity: Activity::parse("InACall").unwrap(),
            status_message: Some(&message),
            is_out_of_office: true,
            out_of_office_message: Some("Away \"today\""),
            work_location_type: WorkLocationType::Remote,
            work_location_source: WorkLocationSource::Manual,
            place_id: None,
            sequence: 42,
        };
        let json = |context, selection, viewer| {
            let mut out = Vec::new();
            PresenceJson {
                context,
                id: "00000000-0000-4000-8000-000000000001",
                view: &view,
                selection,
                viewer,
            }
            .write(&mut out);
            String::from_utf8(out).unwrap()
        };
        let owner = json(
            Some("http://h\"x/$metadata#me"),
            Selection::ALL,
            Viewer::Owner,
        );
        assert_eq!(
            owner,
            concat!(
                r#"{"@odata.context":"http://h\"x/$metadata#me","id":"00000000-0000-4000-8000-000000000001","#,
                r#""availability":"Busy","activity":"InACall","#,
                r#""statusMessage":{"message":{"content":"Back at \"2\" \\ café\n","contentType":"text"},"#,
                r#""publishedDateTime":"2026-08-27T09:14:22.9411568Z","#,
                r#""expiryDateTime":{"dateTime":"2026-08-28T17:00:00.0000000","timeZone":"Pacific Standard Time"}},"#,
                r#""outOfOfficeSettings":{"message":"Away \"today\"","isOutOfOffice":true},"#,
                r#""workLocation":{"workLocationType":"remote","source":"manual","placeId":null},"#,
                r#""sequenceNumber":"A00000000000000000042"}"#
            )
        );
        serde_json::from_str::<serde_json::Value>(&owner).unwrap();
        let other = json(
            None,
            Selection::parse("statusMessage,id").unwrap(),
            Viewer::Other,
        );
        assert_eq!(
            other,
            r#"{"id":"00000000-0000-4000-8000-000000000001","statusMessage":{"message":{"content":"Back at \"2\" \\ café\n","contentType":"text"}}}"#
        );
    }

    #[test]
    fn sequence_digits_are_the_domains_text() {
        for sequence in [0, 1, 9, 10, 42, 1_000_000_007, u64::MAX - 1, u64::MAX] {
            assert_eq!(
                format!(
                    "A{}",
                    std::str::from_utf8(&sequence_digits(sequence)).unwrap()
                ),
                sequence_number(sequence)
            );
        }
    }

    #[test]
    fn sequence_numbers_sort_as_bytes_in_numeric_order() {
        assert!(sequence_number(9) < sequence_number(10));
        assert!(sequence_number(u64::MAX - 1) < sequence_number(u64::MAX));
    }

    #[test]
    fn timestamps_have_seven_fractional_digits() {
        let at: Timestamp = "2026-08-27T09:14:22.9411568Z".parse().unwrap();
        assert_eq!(graph_timestamp(at), "2026-08-27T09:14:22.9411568Z");
        let at: Timestamp = "2026-08-27T09:14:22Z".parse().unwrap();
        assert_eq!(graph_timestamp(at), "2026-08-27T09:14:22.0000000Z");
    }
}
