//! Graph's wire format: request bodies in, presence JSON out.
//!
//! Wire types are not domain types. Request bodies deserialize into the
//! loose shapes below (every field optional, unknown fields ignored), then
//! convert once into validated domain values; the presence JSON is written
//! from a [`PresenceView`] by a hand-written `Serialize` that honours `$select`.

use jiff::Timestamp;
use presenced_domain::{PresenceView, StatusMessage};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetPresenceBody {
    pub session_id: Option<String>,
    pub availability: Option<String>,
    pub activity: Option<String>,
    pub expiration_duration: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClearPresenceBody {
    pub session_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetPreferredBody {
    pub availability: Option<String>,
    pub activity: Option<String>,
    pub expiration_duration: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetStatusMessageBody {
    /// Absent and `null` differ: absent is an error, `null` clears.
    #[serde(default, deserialize_with = "present")]
    pub status_message: Option<Option<StatusMessageBody>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusMessageBody {
    pub message: Option<ItemBody>,
    pub expiry_date_time: Option<DateTimeTimeZone>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemBody {
    pub content: Option<String>,
    pub content_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DateTimeTimeZone {
    pub date_time: Option<String>,
    pub time_zone: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocationBody {
    pub work_location_type: Option<String>,
    pub place_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct IdsBody {
    pub ids: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutOfOfficeBody {
    pub is_out_of_office: Option<bool>,
    pub message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ClockBody {
    pub advance: Option<String>,
}

/// Distinguishes a field sent as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
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

impl Serialize for PresenceJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let view = self.view;
        let mut map = serializer.serialize_map(None)?;
        if let Some(context) = self.context {
            map.serialize_entry("@odata.context", context)?;
        }
        let has = |p| self.selection.has(p);
        if has(Property::Id) {
            map.serialize_entry("id", self.id)?;
        }
        if has(Property::Availability) {
            map.serialize_entry("availability", view.availability.as_str())?;
        }
        if has(Property::Activity) {
            map.serialize_entry("activity", view.activity.as_str())?;
        }
        if has(Property::StatusMessage) {
            let message = view.status_message.map(|m| StatusMessageJson {
                message: m,
                viewer: self.viewer,
            });
            map.serialize_entry("statusMessage", &message)?;
        }
        if has(Property::OutOfOfficeSettings) {
            map.serialize_entry(
                "outOfOfficeSettings",
                &OutOfOfficeJson {
                    message: view.out_of_office_message,
                    is_out_of_office: view.is_out_of_office,
                },
            )?;
        }
        if has(Property::WorkLocation) {
            map.serialize_entry(
                "workLocation",
                &WorkLocationJson {
                    work_location_type: view.work_location_type.as_str(),
                    source: view.work_location_source.as_str(),
                    place_id: view.place_id,
                },
            )?;
        }
        if has(Property::SequenceNumber) {
            map.serialize_entry("sequenceNumber", &sequence_number(view.sequence))?;
        }
        map.end()
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

struct StatusMessageJson<'a> {
    message: &'a StatusMessage,
    viewer: Viewer,
}

impl Serialize for StatusMessageJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let m = self.message;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry(
            "message",
            &ItemBodyJson {
                content: &m.content,
                content_type: "text",
            },
        )?;
        if self.viewer == Viewer::Owner {
            map.serialize_entry("publishedDateTime", &graph_timestamp(m.published_at))?;
            if let Some(expiry) = &m.expiry {
                map.serialize_entry(
                    "expiryDateTime",
                    &DateTimeTimeZoneJson {
                        date_time: expiry
                            .date_time
                            .strftime("%Y-%m-%dT%H:%M:%S%.7f")
                            .to_string(),
                        time_zone: &expiry.time_zone,
                    },
                )?;
            }
        }
        map.end()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ItemBodyJson<'a> {
    content: &'a str,
    content_type: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DateTimeTimeZoneJson<'a> {
    date_time: String,
    time_zone: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutOfOfficeJson<'a> {
    message: Option<&'a str>,
    is_out_of_office: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WorkLocationJson<'a> {
    work_location_type: &'a str,
    source: &'a str,
    place_id: Option<&'a str>,
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
