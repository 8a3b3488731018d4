//! Applying mutations: decisions.md rules 5, 7, 11, 13 and graph-presence.md §2.8.

use jiff::Timestamp;

use super::*;
use crate::fixtures::*;
use crate::location::{WorkLocationLayers, WorkLocationSource};
use crate::status::StatusExpiry;
use crate::view::{derive, next_change};

fn apply_at(
    facts: &mut UserFacts,
    mutation: Mutation,
    now: Timestamp,
) -> Result<Applied, MutationError> {
    apply(facts, mutation, now, &Rules::default())
}

const CHANGED: Applied = Applied {
    visible_change: true,
    facts_changed: true,
};
const REFRESHED: Applied = Applied {
    visible_change: false,
    facts_changed: true,
};
const NOTHING: Applied = Applied {
    visible_change: false,
    facts_changed: false,
};

#[test]
fn set_presence_creates_a_session_then_replaces_and_refreshes_it() {
    let mut facts = UserFacts::default();
    assert_eq!(
        apply_at(&mut facts, set_session("app", AVAILABLE, 60), at(0)),
        Ok(CHANGED)
    );
    assert_eq!(facts.sessions, vec![session("app", AVAILABLE, 0, 60)]);
    assert_eq!(
        apply_at(&mut facts, set_session("app", AVAILABLE, 5), at(3)),
        Ok(REFRESHED)
    );
    assert_eq!(facts.sessions, vec![session("app", AVAILABLE, 3, 8)]);
    assert_eq!(
        apply_at(&mut facts, set_session("app", IN_A_CALL, 240), at(4)),
        Ok(CHANGED)
    );
    assert_eq!(facts.sessions, vec![session("app", IN_A_CALL, 4, 244)]);
    assert_eq!(
        apply_at(&mut facts, set_session("other", AWAY, 5), at(4)),
        Ok(REFRESHED)
    );
    assert_eq!(facts.sessions.len(), 2);
}

#[test]
fn a_refresh_before_fading_holds_available() {
    let mut facts = UserFacts::default();
    run(&mut facts, set_session("app", AVAILABLE, 60), at(0));
    run(&mut facts, set_session("app", AVAILABLE, 60), at(4));
    run(&mut facts, set_session("app", AVAILABLE, 60), at(8));
    assert_eq!(pair(&facts, at(12)), AVAILABLE);
    assert_eq!(pair(&facts, at(13)), INACTIVE);
    // A refresh after fading brings the session back.
    run(&mut facts, set_session("app", AVAILABLE, 60), at(20));
    assert_eq!(pair(&facts, at(20)), AVAILABLE);
}

#[test]
fn repeating_the_same_set_presence_at_the_same_instant_changes_nothing() {
    let mut facts = UserFacts::default();
    run(&mut facts, set_session("app", IN_A_CALL, 60), at(0));
    let before = facts.clone();
    assert_eq!(
        apply_at(&mut facts, set_session("app", IN_A_CALL, 60), at(0)),
        Ok(NOTHING)
    );
    assert_eq!(facts, before);
}

#[test]
fn clear_presence_removes_the_session_and_the_last_one_leaves_the_user_offline() {
    let mut facts = UserFacts::default();
    run(&mut facts, set_session("a", IN_A_CALL, 60), at(0));
    run(&mut facts, set_session("b", AVAILABLE, 60), at(0));
    assert_eq!(
        apply_at(&mut facts, Mutation::ClearSession { id: sid("a") }, at(1)),
        Ok(CHANGED)
    );
    assert_eq!(pair(&facts, at(1)), AVAILABLE);
    assert_eq!(
        apply_at(&mut facts, Mutation::ClearSession { id: sid("b") }, at(2)),
        Ok(CHANGED)
    );
    assert_eq!(pair(&facts, at(2)), OFFLINE);
    assert!(facts.sessions.is_empty());
}

#[test]
fn clear_presence_of_a_missing_or_expired_session_is_not_found_and_changes_nothing() {
    fn check(facts: &UserFacts, id: &str, now: Timestamp) {
        let mut after = facts.clone();
        let got = apply_at(&mut after, Mutation::ClearSession { id: sid(id) }, now);
        assert_eq!(
            got,
            Err(MutationError::SessionNotFound(id.to_owned())),
            "{id} at {now}"
        );
        assert_eq!(&after, facts, "facts untouched");
    }
    let mut facts = UserFacts::default();
    check(&facts, "app", at(0));
    run(&mut facts, set_session("app", IN_A_CALL, 5), at(0));
    check(&facts, "other", at(1));
    check(&facts, "APP", at(1));
    check(&facts, "app", at(5));
    check(&facts, "app", at(60));
    assert_eq!(
        MutationError::SessionNotFound("app".into()).to_string(),
        "No presence session with id 'app' exists for this user."
    );
}

#[test]
fn preferred_presence_takes_its_default_expiration_when_none_is_given() {
    fn check(state: (crate::values::Availability, crate::values::Activity), hours: i64) {
        let mut facts = UserFacts::default();
        let mutation = Mutation::SetPreferred {
            state: preferred_state(state.0, state.1),
            expiration: None,
        };
        run(&mut facts, mutation, at(0));
        let preferred = facts.preferred.unwrap();
        assert_eq!(
            (preferred.set_at, preferred.expires_at),
            (at(0), at(hours * 60)),
            "{state:?}"
        );
    }
    check(BUSY, 24);
    check(DND, 24);
    check(AVAILABLE, 7 * 24);
    check(BRB, 7 * 24);
    check(AWAY, 7 * 24);
    check(OFF_WORK, 7 * 24);
}

#[test]
fn preferred_presence_with_an_expiration_lapses_then() {
    let mut facts = UserFacts::default();
    run(&mut facts, set_session("app", IN_A_CALL, 240), at(0));
    run(&mut facts, set_preferred(DND, 60), at(0));
    assert_eq!(pair(&facts, at(59)), DND);
    assert_eq!(pair(&facts, at(60)), IN_A_CALL);
}

#[test]
fn clear_preferred_presence_is_idempotent() {
    let mut facts = UserFacts::default();
    assert_eq!(
        apply_at(&mut facts, Mutation::ClearPreferred, at(0)),
        Ok(NOTHING)
    );
    run(&mut facts, set_session("app", IN_A_CALL, 60), at(0));
    run(&mut facts, set_preferred(DND, 60), at(0));
    assert_eq!(
        apply_at(&mut facts, Mutation::ClearPreferred, at(1)),
        Ok(CHANGED)
    );
    assert_eq!(pair(&facts, at(1)), IN_A_CALL);
    let before = facts.clone();
    assert_eq!(
        apply_at(&mut facts, Mutation::ClearPreferred, at(2)),
        Ok(NOTHING)
    );
    assert_eq!(facts, before);
}

#[test]
fn set_status_message_sets_it_with_the_server_time_and_none_clears_it() {
    let mut facts = UserFacts::default();
    let expiry = StatusExpiry::parse("2025-06-02T17:00:00", "Pacific Standard Time").unwrap();
    let message = NewStatusMessage {
        content: "Lunch".into(),
        expiry: Some(expiry.clone()),
    };
    assert_eq!(
        apply_at(&mut facts, Mutation::SetStatusMessage(Some(message)), at(1)),
        Ok(CHANGED)
    );
    let stored = facts.status_message.clone().unwrap();
    assert_eq!(
        (stored.content.as_str(), stored.published_at, stored.expiry),
        ("Lunch", at(1), Some(expiry))
    );
    assert_eq!(
        apply_at(&mut facts, Mutation::SetStatusMessage(None), at(2)),
        Ok(CHANGED)
    );
    assert_eq!(facts.status_message, None);
    assert_eq!(
        apply_at(&mut facts, Mutation::SetStatusMessage(None), at(3)),
        Ok(NOTHING)
    );
}

#[test]
fn a_status_message_set_with_a_past_expiry_reads_as_null_at_once() {
    let mut facts = UserFacts::default();
    let expiry = StatusExpiry::parse("2000-01-01T00:00:00", "UTC").unwrap();
    let message = NewStatusMessage {
        content: "Old".into(),
        expiry: Some(expiry),
    };
    assert_eq!(
        apply_at(&mut facts, Mutation::SetStatusMessage(Some(message)), at(0)),
        Ok(REFRESHED)
    );
    assert_eq!(view(&facts, at(0)).status_message, None);
}

#[test]
fn out_of_office_is_replaced_whole() {
    let mut facts = UserFacts::default();
    let ooo = OutOfOffice {
        is_out_of_office: true,
        message: Some("Away until Monday".into()),
    };
    assert_eq!(
        apply_at(&mut facts, Mutation::SetOutOfOffice(ooo.clone()), at(0)),
        Ok(CHANGED)
    );
    assert_eq!(facts.out_of_office, ooo);
    assert_eq!(
        apply_at(&mut facts, Mutation::SetOutOfOffice(ooo), at(1)),
        Ok(NOTHING)
    );
    assert_eq!(
        apply_at(
            &mut facts,
            Mutation::SetOutOfOffice(OutOfOffice::default()),
            at(2)
        ),
        Ok(CHANGED)
    );
    assert_eq!(facts.out_of_office, OutOfOffice::default());
}

#[test]
fn location_actions_set_and_clear_their_layers() {
    let mut facts = UserFacts {
        work_location: WorkLocationLayers {
            scheduled: Some(LocationSignal {
                kind: WorkLocationType::Office,
                place_id: Some("hq".into()),
                until: None,
            }),
            ..WorkLocationLayers::default()
        },
        ..UserFacts::default()
    };
    let loc = |facts: &UserFacts, now| {
        let v = view(facts, now);
        (
            v.work_location_type,
            v.work_location_source,
            v.place_id.map(str::to_owned),
        )
    };
    let midnight: Timestamp = "2025-06-03T00:00:00Z".parse().unwrap();
    run(
        &mut facts,
        Mutation::SetAutomaticLocation {
            kind: WorkLocationType::Remote,
            place_id: None,
        },
        at(0),
    );
    assert_eq!(
        loc(&facts, at(0)),
        (
            WorkLocationType::Remote,
            WorkLocationSource::Automatic,
            None
        )
    );
    assert_eq!(
        facts.work_location.automatic.as_ref().unwrap().until,
        Some(midnight)
    );
    run(
        &mut facts,
        Mutation::SetManualLocation {
            kind: WorkLocationType::Office,
            place_id: Some("b2".into()),
        },
        at(1),
    );
    assert_eq!(
        loc(&facts, at(1)),
        (
            WorkLocationType::Office,
            WorkLocationSource::Manual,
            Some("b2".into())
        )
    );
    assert_eq!(
        facts.work_location.manual.as_ref().unwrap().until,
        Some(midnight)
    );
    // setAutomaticLocation does not clear the manual layer.
    run(
        &mut facts,
        Mutation::SetAutomaticLocation {
            kind: WorkLocationType::TimeOff,
            place_id: None,
        },
        at(2),
    );
    assert_eq!(
        loc(&facts, at(2)),
        (
            WorkLocationType::Office,
            WorkLocationSource::Manual,
            Some("b2".into())
        )
    );
    // clearAutomaticLocation removes only the automatic layer.
    run(&mut facts, Mutation::ClearAutomaticLocation, at(3));
    assert!(facts.work_location.automatic.is_none());
    assert_eq!(
        loc(&facts, at(3)),
        (
            WorkLocationType::Office,
            WorkLocationSource::Manual,
            Some("b2".into())
        )
    );
    // clearLocation removes manual and automatic, and the schedule shows again.
    run(
        &mut facts,
        Mutation::SetAutomaticLocation {
            kind: WorkLocationType::Remote,
            place_id: None,
        },
        at(4),
    );
    run(&mut facts, Mutation::ClearLocation, at(5));
    assert_eq!(
        loc(&facts, at(5)),
        (
            WorkLocationType::Office,
            WorkLocationSource::Scheduled,
            Some("hq".into())
        )
    );
    assert!(facts.work_location.manual.is_none() && facts.work_location.automatic.is_none());
    // A signal set today lapses at midnight UTC.
    run(
        &mut facts,
        Mutation::SetManualLocation {
            kind: WorkLocationType::Remote,
            place_id: None,
        },
        at(6),
    );
    assert_eq!(loc(&facts, midnight).1, WorkLocationSource::Scheduled);
}

#[test]
fn apply_drops_expired_facts_without_disturbing_the_sequence() {
    let mut facts = UserFacts::default();
    let rules = Rules::default();
    run(&mut facts, set_session("short", AVAILABLE, 5), at(0));
    run(&mut facts, set_session("long", IN_A_CALL, 240), at(0));
    run(&mut facts, set_preferred(DND, 20), at(0));
    let expiry = StatusExpiry::parse("2025-06-02T09:30:00", "UTC").unwrap();
    run(
        &mut facts,
        Mutation::SetStatusMessage(Some(NewStatusMessage {
            content: "x".into(),
            expiry: Some(expiry),
        })),
        at(0),
    );
    let before = derive(&facts, at(100), &rules).sequence;
    // An unrelated mutation at 100 minutes.
    run(
        &mut facts,
        Mutation::SetOutOfOffice(OutOfOffice {
            is_out_of_office: false,
            message: Some("m".into()),
        }),
        at(100),
    );
    assert_eq!(facts.sessions, vec![session("long", IN_A_CALL, 0, 240)]);
    assert_eq!(facts.preferred, None);
    assert_eq!(facts.status_message, None);
    assert_eq!(facts.sequence, before + 1);
    assert_eq!(facts.sequence_at, Some(at(100)));
    assert_eq!(derive(&facts, at(240), &rules).sequence, before + 2);
    assert_eq!(next_change(&facts, at(100), &rules), Some(at(240)));
}

#[test]
fn a_no_op_leaves_even_expired_facts_and_the_sequence_alone() {
    let mut facts = UserFacts::default();
    run(&mut facts, set_session("app", AVAILABLE, 5), at(0));
    let before = facts.clone();
    assert_eq!(
        apply_at(&mut facts, Mutation::ClearPreferred, at(30)),
        Ok(NOTHING)
    );
    assert_eq!(facts, before);
    assert_eq!(
        view(&facts, at(30)).sequence,
        2,
        "set, then expired at 5 (the fade at 5 coincides)"
    );
}

#[test]
fn a_mutation_at_a_fade_instant_counts_the_fade_and_the_change() {
    let mut facts = UserFacts::default();
    run(&mut facts, set_session("app", AVAILABLE, 60), at(0));
    assert_eq!(view(&facts, at(5)).sequence, 2);
    assert_eq!(
        apply_at(&mut facts, set_session("app", AVAILABLE, 60), at(5)),
        Ok(CHANGED)
    );
    assert_eq!(view(&facts, at(5)).sequence, 3);
    assert_eq!(pair(&facts, at(5)), AVAILABLE);
}

#[test]
fn an_earlier_clock_never_moves_sequence_at_backwards() {
    let mut facts = UserFacts::default();
    run(&mut facts, set_session("app", IN_A_CALL, 60), at(10));
    run(&mut facts, set_session("app", PRESENTING, 60), at(5));
    assert_eq!(facts.sequence_at, Some(at(10)));
    assert_eq!(facts.sequence, 2);
}

#[test]
fn a_session_over_the_bound_drops_the_least_recently_refreshed_one() {
    let rules = Rules {
        max_sessions: 3,
        ..Rules::default()
    };
    let mut facts = UserFacts::default();
    for (minute, id) in ["a", "b", "c"].into_iter().enumerate() {
        apply(
            &mut facts,
            set_session(id, AVAILABLE, 60),
            at(minute as i64),
            &rules,
        )
        .unwrap();
    }
    // "a" is refreshed: "b" becomes the stalest.
    apply(&mut facts, set_session("a", AVAILABLE, 60), at(3), &rules).unwrap();
    apply(&mut facts, set_session("d", AVAILABLE, 60), at(4), &rules).unwrap();
    let ids: Vec<&str> = facts.sessions.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["a", "c", "d"]);
    // The new session always stays, even when every other one is as fresh.
    apply(&mut facts, set_session("e", AVAILABLE, 60), at(4), &rules).unwrap();
    let ids: Vec<&str> = facts.sessions.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["a", "d", "e"]);
}
