//! Lifetimes against the wall clock, and the cache of validated tokens.

use crate::*;

#[test]
fn lifetimes_are_checked_with_five_minutes_of_leeway() {
    let token = mint(&delegated("Presence.Read"));
    let expiry = t0() + SignedDuration::from_hours(1);
    let leeway = SignedDuration::from_mins(5);
    let check = |now: Timestamp, expected: Result<(), AuthError>| {
        assert_eq!(validate_at(now, &token).map(|_| ()), expected, "at {now}");
    };
    check(expiry, Ok(()));
    check(expiry + leeway, Ok(()));
    check(
        expiry + leeway + SignedDuration::from_secs(1),
        Err(AuthError::Expired),
    );
    check(t0() - leeway, Ok(()));
    check(
        t0() - leeway - SignedDuration::from_secs(1),
        Err(AuthError::NotYetValid),
    );

    let strict = Validator::new(
        ValidatorConfig {
            leeway: SignedDuration::ZERO,
            ..ValidatorConfig::default()
        },
        vec![Arc::new(DevIssuer::new(&DEV.key))],
    )
    .with_clock(move || expiry + SignedDuration::from_secs(1));
    assert_eq!(
        strict.validate_token(&token).err(),
        Some(AuthError::Expired)
    );
}

#[test]
fn lifetimes_are_checked_against_the_real_clock_by_default() {
    let validator = Validator::new(
        ValidatorConfig::default(),
        vec![Arc::new(DevIssuer::new(&DEV.key))],
    );
    let fresh = DEV
        .key
        .mint(&delegated("Presence.Read"), Timestamp::now())
        .expect("mint");
    assert!(validator.validate_token(&fresh).is_ok());
    // A token minted in 2020 for an hour is long expired by the real clock.
    let stale = DEV
        .key
        .mint(
            &delegated("Presence.Read"),
            Timestamp::from_second(1_600_000_000).unwrap(),
        )
        .expect("mint");
    assert_eq!(
        validator.validate_token(&stale).err(),
        Some(AuthError::Expired)
    );
}

#[test]
fn validated_tokens_are_remembered_until_they_expire() {
    let clock = TestClock::at(t0());
    let validator = validator(&clock);
    let token = mint(&application(&["Presence.Read.All"]));
    let first = validator.validate_token(&token).expect("valid");
    let second = validator.validate_token(&token).expect("cached");
    assert_eq!(first, second);
    assert!(
        Arc::ptr_eq(&first.app, &second.app),
        "the second answer comes from the cache"
    );

    clock.set(t0() + SignedDuration::from_mins(65));
    let third = validator.validate_token(&token).expect("within leeway");
    assert!(Arc::ptr_eq(&first.app, &third.app));
    clock.set(t0() + SignedDuration::from_mins(65) + SignedDuration::from_secs(1));
    assert_eq!(
        validator.validate_token(&token).err(),
        Some(AuthError::Expired)
    );
    assert_eq!(
        validator.validate_token(&token).err(),
        Some(AuthError::Expired),
        "and stays refused"
    );
}

#[test]
fn a_refused_token_is_not_remembered_as_valid() {
    let clock = TestClock::at(t0() - SignedDuration::from_hours(1));
    let validator = validator(&clock);
    let token = mint(&delegated("Presence.Read"));
    assert_eq!(
        validator.validate_token(&token).err(),
        Some(AuthError::NotYetValid)
    );
    clock.set(t0());
    assert!(validator.validate_token(&token).is_ok());
}

#[test]
fn one_validator_serves_many_threads() {
    let validator = Arc::new(validator(&TestClock::at(t0())));
    let tokens: Vec<String> = (0..4)
        .map(|i| mint(&delegated(&format!("Presence.Read Scope{i}"))))
        .collect();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (validator, tokens) = (Arc::clone(&validator), tokens.clone());
            std::thread::spawn(move || {
                for round in 0..50 {
                    let token = &tokens[(t + round) % tokens.len()];
                    let principal = validator.validate_token(token).expect("valid");
                    assert!(principal.has_scope("Presence.Read"));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("thread");
    }
}
