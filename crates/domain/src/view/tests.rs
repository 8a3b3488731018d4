//! Aggregation, fading, expiry and out of office: decisions.md rules 7-11.

use jiff::{SignedDuration, Timestamp};

use super::*;
use crate::facts::{OutOfOffice, Preferred, UserFacts};
use crate::fixtures::*;
use crate::location::{LocationSignal, WorkLocationLayers};
use crate::status::{StatusExpiry, StatusMessage};

fn with_sessions(sessions: Vec<Session>) -> UserFacts {
    UserFacts {
        sessions,
        ..UserFacts::default()
    }
}

#[test]
fn a_user_without_sessions_reads_offline() {
    let facts = UserFacts::default();
    let v = view(&facts, t0());
    assert_eq!((v.availability, v.activity), OFFLINE);
    assert_eq!(v.status_message, None);
    assert!(!v.is_out_of_office);
    assert_eq!(v.out_of_office_message, None);
    assert_eq!(
        (v.work_location_type, v.work_location_source, v.place_id),
        (
            WorkLocationType::Unspecified,
            WorkLocationSource::None,
            None
        )
    );
    assert_eq!(v.sequence, 0);
}

#[test]
fn a_fresh_session_reads_as_it_was_set() {
    for state in [AVAILABLE, IN_A_CALL, IN_A_CONFERENCE, AWAY, PRESENTING] {
        let facts = with_sessions(vec![session("app", state, 0, 60)]);
        assert_eq!(pair(&facts, t0()), state);
    }
}

#[test]
fn a_session_exists_until_its_expiry_and_not_at_it() {
    fn check(now: Timestamp, expected: (Availability, Activity)) {
        let facts = with_sessions(vec![session("app", IN_A_CALL, 0, 5)]);
        assert_eq!(pair(&facts, now), expected, "{now}");
    }
    check(at_secs(-1), IN_A_CALL);
    check(at_secs(299), IN_A_CALL);
    check(at_secs(300) - SignedDuration::from_nanos(1), IN_A_CALL);
    check(at(5), OFFLINE);
    check(at(6), OFFLINE);
}

#[test]
fn an_available_session_fades_to_inactive_at_five_minutes_and_to_away_at_ten() {
    fn check(now: Timestamp, expected: (Availability, Activity)) {
        let facts = with_sessions(vec![session("app", AVAILABLE, 0, 240)]);
        assert_eq!(pair(&facts, now), expected, "{now}");
    }
    let nano = SignedDuration::from_nanos(1);
    check(at(0), AVAILABLE);
    check(at(5) - nano, AVAILABLE);
    check(at(5), INACTIVE);
    check(at(10) - nano, INACTIVE);
    check(at(10), AWAY);
    check(at(239), AWAY);
    check(at(240), OFFLINE);
}

#[test]
fn busy_do_not_disturb_and_away_sessions_do_not_fade() {
    for state in [IN_A_CALL, IN_A_CONFERENCE, PRESENTING, AWAY] {
        let facts = with_sessions(vec![session("app", state, 0, 240)]);
        for minute in [0, 5, 10, 11, 60, 239] {
            assert_eq!(pair(&facts, at(minute)), state, "{state:?} at {minute}");
        }
        assert_eq!(pair(&facts, at(240)), OFFLINE);
    }
}

#[test]
fn fading_timeouts_follow_the_rules() {
    let rules = Rules {
        fade_to_inactive: mins(1),
        fade_to_away: mins(2),
        ..Rules::default()
    };
    let facts = with_sessions(vec![session("app", AVAILABLE, 0, 60)]);
    fn check(facts: &UserFacts, rules: &Rules, minute: i64, expected: (Availability, Activity)) {
        let v = derive(facts, at(minute), rules);
        assert_eq!((v.availability, v.activity), expected, "at {minute}");
    }
    check(&facts, &rules, 0, AVAILABLE);
    check(&facts, &rules, 1, INACTIVE);
    check(&facts, &rules, 2, AWAY);
    check(&facts, &Rules::default(), 2, AVAILABLE);
}

#[test]
fn sessions_rank_do_not_disturb_over_busy_over_available_over_away() {
    fn check(sessions: Vec<Session>, now: i64, expected: (Availability, Activity)) {
        let facts = with_sessions(sessions);
        assert_eq!(pair(&facts, at(now)), expected, "{:?}", facts.sessions);
    }
    check(
        vec![session("a", AWAY, 0, 60), session("b", AVAILABLE, 0, 60)],
        0,
        AVAILABLE,
    );
    check(
        vec![
            session("a", AVAILABLE, 0, 60),
            session("b", IN_A_CALL, 0, 60),
        ],
        0,
        IN_A_CALL,
    );
    check(
        vec![
            session("a", IN_A_CALL, 0, 60),
            session("b", PRESENTING, 0, 60),
        ],
        0,
        PRESENTING,
    );
    check(
        vec![
            session("a", PRESENTING, 0, 60),
            session("b", AWAY, 1, 60),
            session("c", AVAILABLE, 2, 60),
        ],
        3,
        PRESENTING,
    );
    // A session refreshed later does not beat a higher rank.
    check(
        vec![
            session("a", IN_A_CALL, 0, 60),
            session("b", AVAILABLE, 30, 60),
        ],
        31,
        IN_A_CALL,
    );
    // A faded-to-inactive Available session still ranks as Available, above Away.
    check(
        vec![session("a", AVAILABLE, 0, 60), session("b", AWAY, 6, 60)],
        7,
        INACTIVE,
    );
    // A session faded all the way to Away ranks as Away.
    check(
        vec![session("a", AVAILABLE, 0, 60), session("b", AWAY, 6, 60)],
        10,
        AWAY,
    );
    // An expired session does not rank at all.
    check(
        vec![session("a", PRESENTING, 0, 5), session("b", AWAY, 0, 60)],
        5,
        AWAY,
    );
}

#[test]
fn the_most_recently_refreshed_session_of_the_winning_availability_gives_the_activity() {
    fn check(sessions: Vec<Session>, now: i64, expected: (Availability, Activity)) {
        let facts = with_sessions(sessions);
        assert_eq!(pair(&facts, at(now)), expected, "{:?}", facts.sessions);
    }
    check(
        vec![
            session("a", IN_A_CALL, 0, 60),
            session("b", IN_A_CONFERENCE, 1, 60),
        ],
        2,
        IN_A_CONFERENCE,
    );
    check(
        vec![
            session("a", IN_A_CONFERENCE, 1, 60),
            session("b", IN_A_CALL, 0, 60),
        ],
        2,
        IN_A_CONFERENCE,
    );
    // A fresh Available session and a faded one: the fresh one is the newer.
    check(
        vec![
            session("a", AVAILABLE, 0, 60),
            session("b", AVAILABLE, 6, 60),
        ],
        7,
        AVAILABLE,
    );
    check(
        vec![
            session("b", AVAILABLE, 6, 60),
            session("a", AVAILABLE, 0, 60),
        ],
        7,
        AVAILABLE,
    );
    // Two sessions faded to Away and an Away session: all read Away/Away.
    check(
        vec![session("a", AVAILABLE, 0, 60), session("b", AWAY, 1, 60)],
        20,
        AWAY,
    );
    // A tie in refresh time goes to the smaller session id, whatever the stored order.
    check(
        vec![
            session("b", IN_A_CALL, 0, 60),
            session("a", IN_A_CONFERENCE, 0, 60),
        ],
        1,
        IN_A_CONFERENCE,
    );
    check(
        vec![
            session("a", IN_A_CONFERENCE, 0, 60),
            session("b", IN_A_CALL, 0, 60),
        ],
        1,
        IN_A_CONFERENCE,
    );
}

#[test]
fn an_unexpired_preferred_presence_wins_while_a_session_exists() {
    fn check(
        preferred: (Availability, Activity),
        sessions: Vec<Session>,
        now: i64,
        expected: (Availability, Activity),
    ) {
        let facts = UserFacts {
            sessions,
            preferred: Some(Preferred {
                state: preferred_state(preferred.0, preferred.1),
                set_at: at(0),
                expires_at: at(30),
            }),
            ..UserFacts::default()
        };
        assert_eq!(pair(&facts, at(now)), expected, "{preferred:?} at {now}");
    }
    check(DND, vec![session("a", AVAILABLE, 0, 60)], 1, DND);
    check(
        AVAILABLE,
        vec![session("a", PRESENTING, 0, 60)],
        1,
        AVAILABLE,
    );
    check(BRB, vec![session("a", IN_A_CALL, 0, 60)], 1, BRB);
    check(OFF_WORK, vec![session("a", IN_A_CALL, 0, 60)], 1, OFF_WORK);
    check(BUSY, vec![session("a", AVAILABLE, 0, 60)], 29, BUSY);
    // Preferred presence needs a live session.
    check(DND, vec![], 1, OFFLINE);
    check(DND, vec![session("a", AVAILABLE, 0, 5)], 5, OFFLINE);
    // Expired preferred presence falls back to the sessions.
    check(DND, vec![session("a", IN_A_CALL, 0, 60)], 30, IN_A_CALL);
    // Fading does not show through a preferred presence.
    check(
        AVAILABLE,
        vec![session("a", AVAILABLE, 0, 60)],
        12,
        AVAILABLE,
    );
}

#[test]
fn a_preferred_presence_applies_again_once_a_session_exists() {
    let mut facts = UserFacts::default();
    run(&mut facts, set_preferred(DND, 600), at(0));
    assert_eq!(pair(&facts, at(1)), OFFLINE);
    run(&mut facts, set_session("app", AVAILABLE, 5), at(2));
    assert_eq!(pair(&facts, at(3)), DND);
    assert_eq!(pair(&facts, at(7)), OFFLINE);
    run(&mut facts, set_session("app", IN_A_CALL, 5), at(8));
    assert_eq!(pair(&facts, at(9)), DND);
}

#[test]
fn out_of_office_reads_as_the_activity_only_of_plain_available_or_offline() {
    fn check(
        sessions: Vec<Session>,
        preferred: Option<(Availability, Activity)>,
        now: i64,
        expected: (Availability, Activity),
    ) {
        let facts = UserFacts {
            sessions,
            preferred: preferred.map(|p| Preferred {
                state: preferred_state(p.0, p.1),
                set_at: at(0),
                expires_at: at(600),
            }),
            out_of_office: OutOfOffice {
                is_out_of_office: true,
                message: Some("On leave".into()),
            },
            ..UserFacts::default()
        };
        let v = view(&facts, at(now));
        assert_eq!(
            (v.availability, v.activity),
            expected,
            "{:?} {preferred:?} at {now}",
            facts.sessions
        );
        assert!(v.is_out_of_office);
        assert_eq!(v.out_of_office_message, Some("On leave"));
    }
    let ooo = |availability| (availability, Activity::OutOfOffice);
    check(vec![], None, 0, ooo(Availability::Offline));
    check(
        vec![session("a", AVAILABLE, 0, 60)],
        None,
        0,
        ooo(Availability::Available),
    );
    check(vec![session("a", AVAILABLE, 0, 60)], None, 6, INACTIVE);
    check(vec![session("a", AVAILABLE, 0, 60)], None, 11, AWAY);
    check(vec![session("a", IN_A_CALL, 0, 60)], None, 0, IN_A_CALL);
    check(
        vec![session("a", IN_A_CONFERENCE, 0, 60)],
        None,
        0,
        IN_A_CONFERENCE,
    );
    check(vec![session("a", PRESENTING, 0, 60)], None, 0, PRESENTING);
    check(vec![session("a", AWAY, 0, 60)], None, 0, AWAY);
    check(
        vec![session("a", IN_A_CALL, 0, 60)],
        Some(AVAILABLE),
        0,
        ooo(Availability::Available),
    );
    check(
        vec![session("a", IN_A_CALL, 0, 60)],
        Some(OFF_WORK),
        0,
        OFF_WORK,
    );
    check(vec![session("a", IN_A_CALL, 0, 60)], Some(BUSY), 0, BUSY);
    check(vec![], Some(DND), 0, ooo(Availability::Offline));
}

#[test]
fn out_of_office_settings_are_returned_even_when_not_out_of_office() {
    let facts = UserFacts {
        sessions: vec![session("a", AVAILABLE, 0, 60)],
        out_of_office: OutOfOffice {
            is_out_of_office: false,
            message: Some("Auto-reply".into()),
        },
        ..UserFacts::default()
    };
    let v = view(&facts, at(0));
    assert_eq!((v.availability, v.activity), AVAILABLE);
    assert!(!v.is_out_of_office);
    assert_eq!(v.out_of_office_message, Some("Auto-reply"));
}

#[test]
fn a_status_message_reads_as_null_from_its_expiry() {
    let expiry = StatusExpiry::parse("2025-06-02T10:00:00", "UTC").unwrap();
    let message = StatusMessage {
        content: "Lunch".into(),
        published_at: at(0),
        expiry: Some(expiry),
    };
    let facts = UserFacts {
        status_message: Some(message.clone()),
        ..UserFacts::default()
    };
    assert_eq!(view(&facts, at(59)).status_message, Some(&message));
    assert_eq!(view(&facts, at(60)).status_message, None);
    let forever = UserFacts {
        status_message: Some(StatusMessage {
            expiry: None,
            ..message
        }),
        ..UserFacts::default()
    };
    assert!(view(&forever, at(60 * 24 * 365)).status_message.is_some());
}

#[test]
fn the_view_shows_the_aggregated_work_location() {
    let facts = UserFacts {
        work_location: WorkLocationLayers {
            manual: Some(LocationSignal {
                kind: WorkLocationType::Office,
                place_id: Some("b1".into()),
                until: Some(at(60)),
            }),
            automatic: Some(LocationSignal {
                kind: WorkLocationType::Remote,
                place_id: None,
                until: Some(at(120)),
            }),
            scheduled: None,
        },
        ..UserFacts::default()
    };
    let loc = |now| {
        let v = view(&facts, at(now));
        (
            v.work_location_type,
            v.work_location_source,
            v.place_id.map(str::to_owned),
        )
    };
    assert_eq!(
        loc(0),
        (
            WorkLocationType::Office,
            WorkLocationSource::Manual,
            Some("b1".into())
        )
    );
    assert_eq!(
        loc(60),
        (
            WorkLocationType::Remote,
            WorkLocationSource::Automatic,
            None
        )
    );
    assert_eq!(
        loc(120),
        (
            WorkLocationType::Unspecified,
            WorkLocationSource::None,
            None
        )
    );
}

#[test]
fn same_presence_ignores_only_the_sequence() {
    let facts = with_sessions(vec![session("a", AVAILABLE, 0, 60)]);
    let a = view(&facts, at(0));
    let b = PresenceView {
        sequence: 99,
        ..a.clone()
    };
    assert!(a.same_presence(&b));
    assert_ne!(a, b);
    let c = PresenceView {
        activity: Activity::AvailableInactive,
        ..a.clone()
    };
    assert!(!a.same_presence(&c));
    let d = PresenceView {
        place_id: Some("x"),
        ..a.clone()
    };
    assert!(!a.same_presence(&d));
}

#[test]
fn sessions_near_the_end_of_time_do_not_overflow() {
    let facts = with_sessions(vec![Session {
        id: sid("a"),
        state: session_state(Availability::Available, Activity::Available),
        refreshed_at: Timestamp::MAX,
        expires_at: Timestamp::MAX,
    }]);
    assert_eq!(
        pair(&facts, Timestamp::MAX - SignedDuration::from_secs(1)),
        AVAILABLE
    );
    assert_eq!(
        next_change(
            &facts,
            Timestamp::MAX - SignedDuration::from_secs(1),
            &Rules::default()
        ),
        Some(Timestamp::MAX)
    );
}
