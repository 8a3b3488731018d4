//! Property tests of the engine as a whole: aggregation rank, sequenceNumber
//! against every visible change, and `next_change` against `derive`.
//! (Duration round trips are in `duration`'s own tests.)

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use crate::facts::{OutOfOffice, Session, UserFacts};
use crate::fixtures::*;
use crate::location::{WorkLocationSource, WorkLocationType};
use crate::mutation::{Mutation, apply};
use crate::sequence::candidates;
use crate::status::{NewStatusMessage, StatusExpiry, StatusMessage, format_date_time};
use crate::values::{Activity, Availability, PreferredState, SessionState};
use crate::view::{PresenceView, Rules, derive, next_change, rank};

/// What a reader sees, owned, so views at different instants can be kept.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    availability: Availability,
    activity: Activity,
    status: Option<StatusMessage>,
    out_of_office: bool,
    out_of_office_message: Option<String>,
    kind: WorkLocationType,
    source: WorkLocationSource,
    place: Option<String>,
}

fn seen(v: &PresenceView<'_>) -> (Seen, u64) {
    let s = Seen {
        availability: v.availability,
        activity: v.activity,
        status: v.status_message.cloned(),
        out_of_office: v.is_out_of_office,
        out_of_office_message: v.out_of_office_message.map(str::to_owned),
        kind: v.work_location_type,
        source: v.work_location_source,
        place: v.place_id.map(str::to_owned),
    };
    (s, v.sequence)
}

/// One step of a random history: an API call, or the clock moving on.
#[derive(Debug, Clone)]
enum Op {
    Set {
        id: u8,
        state: u8,
        minutes: i64,
    },
    Clear {
        id: u8,
    },
    Prefer {
        state: u8,
        minutes: Option<i64>,
    },
    Unprefer,
    Status {
        content: u8,
        expires_in_minutes: Option<i64>,
    },
    Unstatus,
    OutOfOffice {
        on: bool,
        message: bool,
    },
    Manual {
        kind: u8,
        place: bool,
    },
    Automatic {
        kind: u8,
        place: bool,
    },
    ClearAutomatic,
    ClearLocation,
    Advance {
        seconds: i64,
    },
    AdvanceToNextChange,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3, 0u8..5, 5i64..=240).prop_map(|(id, state, minutes)| Op::Set { id, state, minutes }),
        1 => (0u8..3).prop_map(|id| Op::Clear { id }),
        1 => (0u8..6, proptest::option::of(1i64..=600)).prop_map(|(state, minutes)| Op::Prefer { state, minutes }),
        1 => Just(Op::Unprefer),
        1 => (0u8..2, proptest::option::of(-10i64..=600))
            .prop_map(|(content, expires_in_minutes)| Op::Status { content, expires_in_minutes }),
        1 => Just(Op::Unstatus),
        1 => (any::<bool>(), any::<bool>()).prop_map(|(on, message)| Op::OutOfOffice { on, message }),
        1 => (0u8..4, any::<bool>()).prop_map(|(kind, place)| Op::Manual { kind, place }),
        1 => (0u8..4, any::<bool>()).prop_map(|(kind, place)| Op::Automatic { kind, place }),
        1 => Just(Op::ClearAutomatic),
        1 => Just(Op::ClearLocation),
        4 => (0i64..=3 * 3600).prop_map(|seconds| Op::Advance { seconds }),
        2 => Just(Op::AdvanceToNextChange),
    ]
}

fn rules() -> impl Strategy<Value = Rules> {
    (1i64..=10, 0i64..=10).prop_map(|(inactive, extra)| Rules {
        fade_to_inactive: mins(inactive),
        fade_to_away: mins(inactive + extra),
        ..Rules::default()
    })
}

/// The mutation `op` stands for at `now`, if it is one.
fn mutation(op: &Op, now: Timestamp) -> Option<Mutation> {
    let id = |i: u8| sid(["teams", "phone", "bot"][i as usize]);
    let kind = |k: u8| WorkLocationType::ALL[k as usize];
    let place = |p: bool| p.then(|| "building-7".to_owned());
    Some(match *op {
        Op::Set {
            id: i,
            state,
            minutes,
        } => Mutation::SetSession {
            id: id(i),
            state: SessionState::from_code(state).unwrap(),
            expiration: crate::duration::SessionExpiration::new(mins(minutes)).unwrap(),
        },
        Op::Clear { id: i } => Mutation::ClearSession { id: id(i) },
        Op::Prefer { state, minutes } => Mutation::SetPreferred {
            state: PreferredState::from_code(state).unwrap(),
            expiration: minutes
                .map(|m| crate::duration::PreferredExpiration::new(mins(m)).unwrap()),
        },
        Op::Unprefer => Mutation::ClearPreferred,
        Op::Status {
            content,
            expires_in_minutes,
        } => {
            let expiry = expires_in_minutes.map(|m| {
                let civil: DateTime = (now + mins(m)).to_zoned_datetime(TimeZone::UTC).datetime();
                StatusExpiry::parse(&format_date_time(civil), "UTC").unwrap()
            });
            let content = ["Lunch", "In a meeting"][content as usize].to_owned();
            Mutation::SetStatusMessage(Some(NewStatusMessage { content, expiry }))
        }
        Op::Unstatus => Mutation::SetStatusMessage(None),
        Op::OutOfOffice { on, message } => Mutation::SetOutOfOffice(OutOfOffice {
            is_out_of_office: on,
            message: message.then(|| "Back Monday".to_owned()),
        }),
        Op::Manual { kind: k, place: p } => Mutation::SetManualLocation {
            kind: kind(k),
            place_id: place(p),
        },
        Op::Automatic { kind: k, place: p } => Mutation::SetAutomaticLocation {
            kind: kind(k),
            place_id: place(p),
        },
        Op::ClearAutomatic => Mutation::ClearAutomaticLocation,
        Op::ClearLocation => Mutation::ClearLocation,
        Op::Advance { .. } | Op::AdvanceToNextChange => return None,
    })
}

/// Where the clock goes for an advancing `op`.
fn advance_target(op: &Op, facts: &UserFacts, now: Timestamp, rules: &Rules) -> Timestamp {
    match *op {
        Op::Advance { seconds } => now + SignedDuration::from_secs(seconds),
        _ => next_change(facts, now, rules).unwrap_or(now + SignedDuration::from_secs(3600)),
    }
}

/// Plays `ops` from `t0`, calling `observe(facts, instant)` after each
/// mutation and at every instant the view may change while time passes
/// (each candidate, the nanosecond before it, and the end of each advance).
fn play(
    ops: &[Op],
    rules: &Rules,
    mut observe: impl FnMut(&UserFacts, Timestamp, Option<bool>),
) -> (UserFacts, Timestamp) {
    let mut facts = UserFacts::default();
    let mut now = t0();
    observe(&facts, now, None);
    for op in ops {
        if let Some(m) = mutation(op, now) {
            let applied = apply(&mut facts, m, now, rules)
                .ok()
                .map(|a| a.visible_change);
            observe(&facts, now, applied);
            continue;
        }
        let target = advance_target(op, &facts, now, rules);
        let mut points: Vec<Timestamp> = candidates(&facts, rules)
            .filter(|&c| c > now && c <= target)
            .collect();
        points.push(target);
        points.sort();
        points.dedup();
        for point in points {
            let just_before = point - SignedDuration::from_nanos(1);
            if just_before > now {
                observe(&facts, just_before, None);
            }
            observe(&facts, point, None);
        }
        now = target;
    }
    (facts, now)
}

fn live_sessions() -> impl Strategy<Value = Vec<(u8, u8, i64, i64)>> {
    proptest::collection::vec((0u8..6, 0u8..5, -30i64..=0, 1i64..=60), 0..6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn aggregation_never_ranks_a_lower_availability_above_a_higher_one(
        raw in live_sessions(),
        now_minute in 0i64..=30,
        rules in rules(),
    ) {
        let mut sessions: Vec<Session> = Vec::new();
        for (id, state, refreshed, lifetime) in raw {
            let id = sid(&format!("s{id}"));
            if sessions.iter().any(|s| s.id == id) {
                continue;
            }
            let state = SessionState::from_code(state).unwrap();
            sessions.push(Session { id, state, refreshed_at: at(refreshed), expires_at: at(refreshed + lifetime) });
        }
        let facts = UserFacts { sessions: sessions.clone(), ..UserFacts::default() };
        let now = at(now_minute);
        let v = derive(&facts, now, &rules);
        let live: Vec<_> = sessions.iter().filter_map(|s| Some((s.effective_at(now, &rules)?, s))).collect();
        match live.iter().map(|((a, _), _)| rank(*a)).max() {
            None => prop_assert_eq!((v.availability, v.activity), (Availability::Offline, Activity::Offline)),
            Some(best) => {
                prop_assert_eq!(rank(v.availability), best);
                let winners: Vec<_> = live.iter().filter(|((a, _), _)| rank(*a) == best).collect();
                let newest = winners.iter().map(|(_, s)| s.refreshed_at).max().unwrap();
                prop_assert!(
                    winners.iter().any(|((a, b), s)| s.refreshed_at == newest && (*a, *b) == (v.availability, v.activity)),
                    "{:?} is not the newest winner among {:?}", (v.availability, v.activity), winners
                );
            }
        }
    }

    #[test]
    fn sequence_strictly_increases_with_every_visible_change_and_only_then(
        ops in proptest::collection::vec(op(), 1..40),
        rules in rules(),
    ) {
        let mut previous: Option<(Seen, u64)> = None;
        let mut failure: Option<String> = None;
        play(&ops, &rules, |facts, now, applied| {
            let current = seen(&derive(facts, now, &rules));
            if let Some((before, before_seq)) = &previous {
                let changed = current.0 != *before;
                let ok = if changed { current.1 > *before_seq } else { current.1 == *before_seq };
                let consistent = applied.is_none_or(|visible| visible == changed);
                if (!ok || !consistent) && failure.is_none() {
                    failure = Some(format!("at {now}: {before:?}#{before_seq} -> {:?}#{} (applied: {applied:?})", current.0, current.1));
                }
            }
            previous = Some(current);
        });
        prop_assert!(failure.is_none(), "{}", failure.unwrap());
    }

    #[test]
    fn the_view_holds_until_next_change_and_differs_at_it(
        ops in proptest::collection::vec(op(), 0..30),
        rules in rules(),
        fractions in proptest::collection::vec(0u32..1000, 4),
    ) {
        let (facts, now) = play(&ops, &rules, |_, _, _| {});
        let here = derive(&facts, now, &rules);
        match next_change(&facts, now, &rules) {
            Some(change) => {
                prop_assert!(change > now);
                let span = change.duration_since(now);
                let mut probes = vec![now, change - SignedDuration::from_nanos(1)];
                probes.extend(fractions.iter().map(|&f| now + span.mul_f64(f64::from(f) / 1000.0)));
                for probe in probes.into_iter().filter(|&p| p >= now && p < change) {
                    let there = derive(&facts, probe, &rules);
                    prop_assert!(there.same_presence(&here), "changed at {} before {}", probe, change);
                    prop_assert_eq!(there.sequence, here.sequence);
                }
                let after = derive(&facts, change, &rules);
                prop_assert!(!after.same_presence(&here), "nothing changed at {}", change);
                prop_assert_eq!(after.sequence, here.sequence + 1);
            }
            None => {
                for days in [1, 30, 400, 3650] {
                    let later = now + SignedDuration::from_hours(24 * days);
                    let there = derive(&facts, later, &rules);
                    prop_assert!(there.same_presence(&here), "changed by {}", later);
                    prop_assert_eq!(there.sequence, here.sequence);
                }
            }
        }
    }
}

proptest! {
    #[test]
    fn parsers_refuse_arbitrary_text_without_panicking(text in "\\PC{0,40}", near in "[PTWDHMS0-9.:, -]{0,24}") {
        for input in [text.as_str(), near.as_str()] {
            let _ = crate::duration::parse_duration(input, crate::duration::DurationSyntax::AlsoPythonTimedelta);
            let _ = crate::status::parse_date_time(input);
            let _ = crate::status::resolve_time_zone(input);
            let _ = crate::ids::Guid::parse(input);
            let _ = crate::ids::SessionId::parse(input);
            let _ = SessionState::parse(input, input);
            let _ = WorkLocationType::parse(input);
        }
    }
}
