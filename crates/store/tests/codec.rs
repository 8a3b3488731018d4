//! The record encoding: every value round-trips, and no input makes decoding
//! panic.

use jiff::Timestamp;
use jiff::civil::DateTime;
use presenced_domain::{
    Guid, LocationSignal, OutOfOffice, Preferred, PreferredState, Session, SessionId, SessionState,
    StatusExpiry, StatusMessage, UserFacts, WorkLocationLayers, WorkLocationType,
};
use presenced_store::codec::{
    decode_directory_user, decode_tenant, decode_timestamp, decode_user_record,
    encode_directory_user, encode_tenant, encode_timestamp, encode_user_record,
    replace_user_record_deadline, user_record_deadline,
};
use presenced_store::{DirectoryUser, StoreError, Tenant, UserProfile};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

fn timestamp() -> impl Strategy<Value = Timestamp> {
    let (min, max) = (
        Timestamp::MIN.as_nanosecond(),
        Timestamp::MAX.as_nanosecond(),
    );
    prop_oneof![
        // Instants near now, where real data lives.
        (1_700_000_000_000_000_000i128..1_900_000_000_000_000_000i128),
        // And the whole range, edges included.
        (min..=max),
        Just(min),
        Just(max),
    ]
    .prop_map(|nanos| Timestamp::from_nanosecond(nanos).unwrap())
}

fn date_time() -> impl Strategy<Value = DateTime> {
    (
        -9999i16..=9999,
        1i8..=12,
        1i8..=28,
        0i8..=23,
        0i8..=59,
        0i8..=59,
        0i32..1_000_000_000,
    )
        .prop_map(|(y, mo, d, h, mi, s, ns)| DateTime::new(y, mo, d, h, mi, s, ns).unwrap())
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9 -]{0,40}", "\\PC{0,12}"]
}

fn session() -> impl Strategy<Value = Session> {
    (
        // Not blank: a blank id is refused by `SessionId::parse`.
        "[a-z0-9]\\PC{0,39}",
        0..SessionState::ALLOWED.len() as u8,
        timestamp(),
        timestamp(),
    )
        .prop_map(|(id, code, refreshed_at, expires_at)| Session {
            id: SessionId::parse(&id).unwrap(),
            state: SessionState::from_code(code).unwrap(),
            refreshed_at,
            expires_at,
        })
}

fn preferred() -> impl Strategy<Value = Preferred> {
    (
        0..PreferredState::ALLOWED.len() as u8,
        timestamp(),
        timestamp(),
    )
        .prop_map(|(code, set_at, expires_at)| Preferred {
            state: PreferredState::from_code(code).unwrap(),
            set_at,
            expires_at,
        })
}

fn status_message() -> impl Strategy<Value = StatusMessage> {
    let expiry =
        (date_time(), text(), timestamp()).prop_map(|(date_time, time_zone, at)| StatusExpiry {
            date_time,
            time_zone,
            at,
        });
    ("\\PC{1,60}", timestamp(), option::of(expiry)).prop_map(|(content, published_at, expiry)| {
        StatusMessage {
            content,
            published_at,
            expiry,
        }
    })
}

fn signal() -> impl Strategy<Value = LocationSignal> {
    (
        0..WorkLocationType::ALL.len(),
        option::of(text()),
        option::of(timestamp()),
    )
        .prop_map(|(kind, place_id, until)| LocationSignal {
            kind: WorkLocationType::ALL[kind],
            place_id,
            until,
        })
}

fn facts() -> impl Strategy<Value = UserFacts> {
    let layers = (
        option::of(signal()),
        option::of(signal()),
        option::of(signal()),
    )
        .prop_map(|(manual, automatic, scheduled)| WorkLocationLayers {
            manual,
            automatic,
            scheduled,
        });
    let out_of_office =
        (any::<bool>(), option::of(text())).prop_map(|(is_out_of_office, message)| OutOfOffice {
            is_out_of_office,
            message,
        });
    (
        vec(session(), 0..4),
        option::of(preferred()),
        option::of(status_message()),
        out_of_office,
        layers,
        any::<u64>(),
        option::of(timestamp()),
    )
        .prop_map(
            |(
                sessions,
                preferred,
                status_message,
                out_of_office,
                work_location,
                sequence,
                sequence_at,
            )| {
                UserFacts {
                    sessions,
                    preferred,
                    status_message,
                    out_of_office,
                    work_location,
                    sequence,
                    sequence_at,
                }
            },
        )
}

proptest! {
    #[test]
    fn user_records_round_trip(facts in facts(), deadline in option::of(timestamp())) {
        let bytes = encode_user_record(&facts, deadline);
        let (decoded, decoded_deadline) = decode_user_record(&bytes).unwrap();
        prop_assert_eq!(decoded, facts);
        prop_assert_eq!(decoded_deadline, deadline);
        prop_assert_eq!(user_record_deadline(&bytes).unwrap(), deadline);
    }

    #[test]
    fn replacing_the_deadline_keeps_the_facts(
        facts in facts(),
        before in option::of(timestamp()),
        after in option::of(timestamp()),
    ) {
        let bytes = replace_user_record_deadline(&encode_user_record(&facts, before), after).unwrap();
        prop_assert_eq!(bytes.clone(), encode_user_record(&facts, after));
    }

    #[test]
    fn every_truncation_of_a_record_is_corrupt(facts in facts(), deadline in option::of(timestamp())) {
        let bytes = encode_user_record(&facts, deadline);
        for len in 0..bytes.len() {
            let is_corrupt = matches!(decode_user_record(&bytes[..len]), Err(StoreError::Corrupt(_)));
            prop_assert!(is_corrupt, "a record cut to {} bytes decoded", len);
        }
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert!(matches!(decode_user_record(&longer), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn damaged_records_never_panic(facts in facts(), flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let mut bytes = encode_user_record(&facts, None);
        for (index, byte) in flips {
            let at = index.index(bytes.len());
            bytes[at] ^= byte;
        }
        // Either outcome is fine; only a panic is not.
        let _ = decode_user_record(&bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..200)) {
        let _ = decode_user_record(&bytes);
        let _ = user_record_deadline(&bytes);
        let _ = replace_user_record_deadline(&bytes, None);
        let _ = decode_tenant(Guid::from_u128(1), &bytes);
        let _ = decode_directory_user(Guid::from_u128(1), &bytes);
        let _ = decode_timestamp(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_the_version_never_panic(bytes in vec(any::<u8>(), 0..200)) {
        let mut record = vec![presenced_store::codec::FORMAT_VERSION];
        record.extend(bytes);
        let _ = decode_user_record(&record);
        let _ = decode_directory_user(Guid::from_u128(1), &record);
    }

    #[test]
    fn directory_records_round_trip(id in any::<u128>(), upn in text(), name in text()) {
        let id = Guid::from_u128(id);
        let user = DirectoryUser { id, user_principal_name: upn, display_name: name.clone(), profile: Default::default() };
        prop_assert_eq!(decode_directory_user(id, &encode_directory_user(&user)).unwrap(), user);
        let tenant = Tenant { id, display_name: name };
        prop_assert_eq!(decode_tenant(id, &encode_tenant(&tenant)).unwrap(), tenant);
    }

    #[test]
    fn directory_profiles_round_trip(
        texts in vec(option::of(text()), 7),
        phones in vec(text(), 0..4),
    ) {
        let id = Guid::from_u128(7);
        let profile = UserProfile {
            mail: texts[0].clone(),
            given_name: texts[1].clone(),
            surname: texts[2].clone(),
            job_title: texts[3].clone(),
            mobile_phone: texts[4].clone(),
            office_location: texts[5].clone(),
            preferred_language: texts[6].clone(),
            business_phones: phones,
        };
        let user = DirectoryUser {
            id,
            user_principal_name: "a@b".into(),
            display_name: "A".into(),
            profile,
        };
        prop_assert_eq!(decode_directory_user(id, &encode_directory_user(&user)).unwrap(), user);
    }

    #[test]
    fn instants_round_trip(at in timestamp()) {
        prop_assert_eq!(decode_timestamp(&encode_timestamp(at)).unwrap(), at);
    }
}

#[test]
fn a_directory_user_without_a_profile_is_written_as_before_profiles_existed() {
    // Version 1, "a@b", "A": the record every earlier version wrote.
    let old = [1, 3, b'a', b'@', b'b', 1, b'A'];
    let id = Guid::from_u128(7);
    let user = DirectoryUser {
        id,
        user_principal_name: "a@b".into(),
        display_name: "A".into(),
        profile: UserProfile::default(),
    };
    assert_eq!(decode_directory_user(id, &old).unwrap(), user);
    assert_eq!(encode_directory_user(&user), old);
    // A phone count larger than the bytes left is corrupt, not an allocation.
    let mut bad = old.to_vec();
    bad.extend([0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(matches!(
        decode_directory_user(id, &bad),
        Err(StoreError::Corrupt(_))
    ));
}

#[test]
fn empty_facts_take_a_few_bytes() {
    let bytes = encode_user_record(&UserFacts::default(), None);
    assert_eq!(bytes.len(), 5, "{bytes:?}");
}

#[test]
fn a_typical_user_fits_a_small_allocation() {
    let now = Timestamp::from_second(1_780_000_000).unwrap();
    let facts = UserFacts {
        sessions: vec![Session {
            id: SessionId::parse("22553876-f5ab-4529-bffb-cfe50aa89f87").unwrap(),
            state: SessionState::from_code(0).unwrap(),
            refreshed_at: now,
            expires_at: now + jiff::SignedDuration::from_mins(5),
        }],
        preferred: Some(Preferred {
            state: PreferredState::from_code(1).unwrap(),
            set_at: now,
            expires_at: now + jiff::SignedDuration::from_hours(24),
        }),
        sequence: 3,
        sequence_at: Some(now),
        ..UserFacts::default()
    };
    let bytes = encode_user_record(&facts, Some(now + jiff::SignedDuration::from_mins(5)));
    assert!(bytes.len() <= 112, "{} bytes", bytes.len());
}
