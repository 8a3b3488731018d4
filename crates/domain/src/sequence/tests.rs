//! `sequenceNumber` and `next_change`: decisions.md rule 12.

use jiff::{SignedDuration, Timestamp};

use super::*;
use crate::facts::{OutOfOffice, Preferred};
use crate::fixtures::*;
use crate::location::{LocationSignal, WorkLocationType};
use crate::mutation::Mutation;
use crate::status::{NewStatusMessage, StatusExpiry};
use crate::view::{next_change, sequence_number_text};

fn seq(facts: &UserFacts, now: Timestamp) -> u64 {
    view(facts, now).sequence
}

fn status(content: &str, expires_minutes_after_t0: Option<i64>) -> Mutation {
    let expiry = expires_minutes_after_t0.map(|m| {
        let civil = at(m).to_zoned_datetime(jiff::tz::TimeZone::UTC).datetime();
        StatusExpiry::parse(&crate::status::format_date_time(civil), "UTC").unwrap()
    });
    Mutation::SetStatusMessage(Some(NewStatusMessage {
        content: content.into(),
        expiry,
    }))
}

#[test]
fn a_visible_change_moves_the_sequence_by_one_and_a_refresh_does_not() {
    let mut facts = UserFacts::default();
    assert_eq!(seq(&facts, at(0)), 0);
    run(&mut facts, set_session("app", IN_A_CALL, 60), at(0));
    assert_eq!(seq(&facts, at(0)), 1);
    run(&mut facts, set_session("app", IN_A_CALL, 60), at(1));
    assert_eq!(
        seq(&facts, at(1)),
        1,
        "a refresh of a Busy session shows nothing new"
    );
    run(&mut facts, set_session("other", AWAY, 60), at(2));
    assert_eq!(
        seq(&facts, at(2)),
        1,
        "an Away session under a Busy one shows nothing new"
    );
    run(&mut facts, set_session("app", PRESENTING, 60), at(3));
    assert_eq!(seq(&facts, at(3)), 2);
    run(&mut facts, Mutation::ClearPreferred, at(4));
    assert_eq!(seq(&facts, at(4)), 2);
}

#[test]
fn fading_moves_the_sequence_at_exactly_five_and_ten_minutes() {
    let mut facts = UserFacts::default();
    run(&mut facts, set_session("app", AVAILABLE, 60), at(0));
    let nano = SignedDuration::from_nanos(1);
    fn check(facts: &UserFacts, now: Timestamp, expected: u64) {
        assert_eq!(seq(facts, now), expected, "at {now}");
    }
    check(&facts, at(0), 1);
    check(&facts, at(5) - nano, 1);
    check(&facts, at(5), 2);
    check(&facts, at(10) - nano, 2);
    check(&facts, at(10), 3);
    check(&facts, at(59), 3);
    check(&facts, at(60), 4);
    check(&facts, at(6000), 4);
}

#[test]
fn changes_between_two_reads_are_all_counted() {
    let mut facts = UserFacts::default();
    run(&mut facts, set_session("app", AVAILABLE, 15), at(0));
    assert_eq!(seq(&facts, at(0)), 1);
    // Inactive at 5, Away at 10, Offline at 15: three changes nobody read.
    assert_eq!(seq(&facts, at(30)), 4);
}

#[test]
fn time_driven_instants_that_change_nothing_visible_do_not_count() {
    // A Busy session expiring under a DoNotDisturb one.
    let mut facts = UserFacts::default();
    run(&mut facts, set_session("dnd", PRESENTING, 30), at(0));
    run(&mut facts, set_session("busy", IN_A_CALL, 10), at(0));
    assert_eq!(seq(&facts, at(0)), 1);
    assert_eq!(seq(&facts, at(20)), 1);
    assert_eq!(seq(&facts, at(30)), 2);
    // An Available session fading under a Busy one.
    let mut facts = UserFacts::default();
    run(&mut facts, set_session("busy", IN_A_CALL, 60), at(0));
    run(&mut facts, set_session("avail", AVAILABLE, 60), at(0));
    assert_eq!(seq(&facts, at(30)), 1);
    // A preferred presence lapsing while the user is offline.
    let mut facts = UserFacts::default();
    run(&mut facts, set_preferred(DND, 10), at(0));
    assert_eq!(
        seq(&facts, at(0)),
        0,
        "a preference without a session shows nothing"
    );
    assert_eq!(seq(&facts, at(20)), 0);
}

#[test]
fn instants_that_coincide_count_once() {
    let mut facts = UserFacts::default();
    run(&mut facts, set_session("avail", AVAILABLE, 60), at(0));
    run(&mut facts, set_session("busy", IN_A_CALL, 10), at(0));
    assert_eq!(seq(&facts, at(0)), 2);
    // At 10 the Busy session expires and the Available one fades to Away: one change.
    assert_eq!(seq(&facts, at(10)), 3);
}

#[test]
fn preferred_presence_status_message_and_location_lapses_count() {
    let mut facts = UserFacts::default();
    run(&mut facts, set_session("app", IN_A_CALL, 240), at(0));
    run(&mut facts, set_preferred(DND, 20), at(0));
    run(&mut facts, status("Lunch", Some(30)), at(0));
    run(
        &mut facts,
        Mutation::SetManualLocation {
            kind: WorkLocationType::Office,
            place_id: None,
        },
        at(0),
    );
    assert_eq!(seq(&facts, at(0)), 4);
    assert_eq!(seq(&facts, at(20)), 5, "preferred presence lapsed");
    assert_eq!(seq(&facts, at(30)), 6, "status message expired");
    assert_eq!(seq(&facts, at(239)), 6);
    assert_eq!(seq(&facts, at(240)), 7, "the session expired");
    assert_eq!(seq(&facts, at(15 * 60) - SignedDuration::from_nanos(1)), 7);
    assert_eq!(
        seq(&facts, at(15 * 60)),
        8,
        "manual location lapsed at midnight UTC"
    );
}

#[test]
fn every_kind_of_visible_change_moves_the_sequence() {
    fn check(mutation: Mutation, expected_change: bool) {
        let mut facts = UserFacts::default();
        run(&mut facts, set_session("app", AVAILABLE, 60), at(0));
        run(&mut facts, status("Hi", None), at(0));
        let before = seq(&facts, at(1));
        run(&mut facts, mutation.clone(), at(1));
        let after = seq(&facts, at(1));
        assert_eq!(after > before, expected_change, "{mutation:?}");
        assert!(after >= before);
    }
    check(set_session("app", IN_A_CALL, 60), true);
    check(set_session("app", AVAILABLE, 60), false);
    check(status("Bye", None), true);
    check(status("Hi", None), true); // publishedDateTime moves
    check(status("Hi", Some(600)), true);
    check(Mutation::SetStatusMessage(None), true);
    check(
        Mutation::SetOutOfOffice(OutOfOffice {
            is_out_of_office: true,
            message: None,
        }),
        true,
    );
    check(
        Mutation::SetOutOfOffice(OutOfOffice {
            is_out_of_office: false,
            message: Some("x".into()),
        }),
        true,
    );
    check(Mutation::SetOutOfOffice(OutOfOffice::default()), false);
    check(
        Mutation::SetManualLocation {
            kind: WorkLocationType::Remote,
            place_id: None,
        },
        true,
    );
    check(
        Mutation::SetAutomaticLocation {
            kind: WorkLocationType::Office,
            place_id: Some("p".into()),
        },
        true,
    );
    check(Mutation::ClearLocation, false);
    check(Mutation::ClearAutomaticLocation, false);
    check(set_preferred(AVAILABLE, 60), false);
    check(set_preferred(BUSY, 60), true);
    check(Mutation::ClearPreferred, false);
}

#[test]
fn a_change_of_place_or_source_alone_is_visible() {
    let mut facts = UserFacts::default();
    let office = |place: Option<&str>| Mutation::SetManualLocation {
        kind: WorkLocationType::Office,
        place_id: place.map(str::to_owned),
    };
    run(&mut facts, office(None), at(0));
    let s0 = seq(&facts, at(0));
    run(&mut facts, office(Some("b1")), at(1));
    assert_eq!(seq(&facts, at(1)), s0 + 1);
    run(
        &mut facts,
        Mutation::SetAutomaticLocation {
            kind: WorkLocationType::Office,
            place_id: Some("b1".into()),
        },
        at(2),
    );
    assert_eq!(
        seq(&facts, at(2)),
        s0 + 1,
        "the automatic layer is hidden under the manual one"
    );
    run(
        &mut facts,
        Mutation::SetManualLocation {
            kind: WorkLocationType::Office,
            place_id: Some("b1".into()),
        },
        at(3),
    );
    assert_eq!(
        seq(&facts, at(3)),
        s0 + 1,
        "same manual signal, only its lapse instant is unchanged"
    );
}

#[test]
fn facts_never_written_by_a_mutation_count_from_the_beginning_of_time() {
    let facts = UserFacts {
        sessions: vec![session("app", AVAILABLE, 0, 60)],
        sequence: 7,
        sequence_at: None,
        ..UserFacts::default()
    };
    // The stored sequence stands for the view as it has always been; only
    // the fades after it count.
    assert_eq!(seq(&facts, at(0)), 7);
    assert_eq!(seq(&facts, at(5)), 7 + 1);
    assert_eq!(seq(&facts, at(11)), 7 + 2);
}

#[test]
fn next_change_names_the_first_instant_the_view_changes_by_itself() {
    let mut facts = UserFacts::default();
    let rules = Rules::default();
    assert_eq!(next_change(&facts, at(0), &rules), None);
    run(&mut facts, set_session("app", AVAILABLE, 60), at(0));
    fn check(facts: &UserFacts, now: Timestamp, expected: Option<Timestamp>) {
        assert_eq!(
            next_change(facts, now, &Rules::default()),
            expected,
            "from {now}"
        );
    }
    check(&facts, at(0), Some(at(5)));
    check(&facts, at(5) - SignedDuration::from_nanos(1), Some(at(5)));
    check(&facts, at(5), Some(at(10)));
    check(&facts, at(10), Some(at(60)));
    check(&facts, at(60), None);
}

#[test]
fn next_change_skips_instants_that_change_nothing_visible() {
    let mut facts = UserFacts::default();
    run(&mut facts, set_session("dnd", PRESENTING, 30), at(0));
    run(&mut facts, set_session("busy", IN_A_CALL, 10), at(0));
    run(&mut facts, set_session("avail", AVAILABLE, 20), at(0));
    assert_eq!(next_change(&facts, at(0), &Rules::default()), Some(at(30)));

    let mut facts = UserFacts::default();
    run(&mut facts, set_preferred(DND, 10), at(0));
    assert_eq!(
        next_change(&facts, at(0), &Rules::default()),
        None,
        "a lapse while offline shows nothing"
    );

    let mut facts = UserFacts::default();
    run(&mut facts, set_session("busy", IN_A_CALL, 60), at(0));
    run(&mut facts, set_preferred(DND, 10), at(0));
    run(&mut facts, status("x", Some(5)), at(0));
    assert_eq!(next_change(&facts, at(0), &Rules::default()), Some(at(5)));
    assert_eq!(next_change(&facts, at(5), &Rules::default()), Some(at(10)));
    assert_eq!(next_change(&facts, at(10), &Rules::default()), Some(at(60)));
}

#[test]
fn next_change_includes_location_lapses() {
    let mut facts = UserFacts::default();
    run(
        &mut facts,
        Mutation::SetAutomaticLocation {
            kind: WorkLocationType::Remote,
            place_id: None,
        },
        at(0),
    );
    assert_eq!(
        next_change(&facts, at(0), &Rules::default()),
        Some("2025-06-03T00:00:00Z".parse().unwrap())
    );
    let scheduled_only = UserFacts {
        work_location: crate::location::WorkLocationLayers {
            scheduled: Some(LocationSignal {
                kind: WorkLocationType::Office,
                place_id: None,
                until: None,
            }),
            ..Default::default()
        },
        ..UserFacts::default()
    };
    assert_eq!(next_change(&scheduled_only, at(0), &Rules::default()), None);
}

#[test]
fn the_preferred_candidate_is_its_expiry() {
    let facts = UserFacts {
        sessions: vec![session("a", AVAILABLE, 0, 240)],
        preferred: Some(Preferred {
            state: preferred_state(BUSY.0, BUSY.1),
            set_at: at(0),
            expires_at: at(7),
        }),
        ..UserFacts::default()
    };
    let rules = Rules::default();
    let mut points: Vec<_> = candidates(&facts, &rules).collect();
    points.sort();
    assert_eq!(points, [at(5), at(7), at(10), at(240)]);
    // At 7 the preference lapses onto a session already faded to inactive.
    assert_eq!(next_change(&facts, at(0), &rules), Some(at(7)));
    assert_eq!(pair(&facts, at(7)), INACTIVE);
}

#[test]
fn sequence_number_text_sorts_in_byte_order_like_the_numbers() {
    let values = [0u64, 1, 9, 10, 99, 100, 12_345, u64::MAX - 1, u64::MAX];
    for pair in values.windows(2) {
        let (a, b) = (sequence_number_text(pair[0]), sequence_number_text(pair[1]));
        assert!(a.as_bytes() < b.as_bytes(), "{a} < {b}");
        assert_eq!(a.len(), 20);
    }
    assert_eq!(sequence_number_text(42), "00000000000000000042");
}
