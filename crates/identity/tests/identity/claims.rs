//! The identity claims a trusted token must carry.

use crate::*;

#[test]
fn identity_claims_are_required_and_checked() {
    let check = |edit: &dyn Fn(&mut serde_json::Map<String, Value>),
                 expected: Option<AuthError>| {
        let token = edited(edit);
        assert_eq!(validate_at(t0(), &token).err(), expected);
    };
    check(
        &|c| drop(c.remove("tid")),
        Some(AuthError::MissingClaim("tid")),
    );
    check(
        &|c| drop(c.remove("oid")),
        Some(AuthError::MissingClaim("oid")),
    );
    check(
        &|c| drop(c.remove("exp")),
        Some(AuthError::MissingClaim("exp")),
    );
    check(
        &|c| drop(c.insert("oid".into(), json!("alice@contoso.com"))),
        Some(AuthError::InvalidClaim {
            claim: "oid",
            expected: "a GUID",
        }),
    );
    check(
        &|c| drop(c.insert("oid".into(), json!(7))),
        Some(AuthError::InvalidClaim {
            claim: "oid",
            expected: "a string",
        }),
    );
    check(
        &|c| drop(c.insert("exp".into(), json!("soon"))),
        Some(AuthError::InvalidClaim {
            claim: "exp",
            expected: "a number of seconds",
        }),
    );
    check(
        &|c| {
            let other = "6e4d9b3a-1111-4000-8000-0000000000ff";
            c.insert("tid".into(), json!(other));
        },
        Some(AuthError::UntrustedIssuer),
    );
    check(
        &|c| {
            c.insert("tid".into(), json!("contoso"));
            c.insert(
                "iss".into(),
                json!("https://login.presenced.local/contoso/v2.0"),
            );
        },
        Some(AuthError::InvalidClaim {
            claim: "tid",
            expected: "a GUID",
        }),
    );
    check(
        &|c| {
            c.remove("appid");
            c.remove("azp");
        },
        Some(AuthError::MissingClaim("appid")),
    );
    check(&|c| drop(c.remove("appid")), None);
    check(&|c| drop(c.remove("azp")), None);
    check(&|c| drop(c.remove("nbf")), None);
    check(
        &|c| {
            c.remove("scp");
            c.insert("roles".into(), json!("Presence.ReadWrite.All"));
        },
        Some(AuthError::InvalidClaim {
            claim: "roles",
            expected: "an array of strings",
        }),
    );
}

#[test]
fn scp_makes_a_token_delegated_even_beside_roles() {
    let token = edited(|c| {
        c.insert("roles".into(), json!(["Presence.ReadWrite.All"]));
    });
    let principal = validate_at(t0(), &token).expect("valid");
    assert!(principal.is_delegated());
    assert!(!principal.has_role("Presence.ReadWrite.All"));
}

#[test]
fn personal_account_tokens_validate_for_the_api_to_refuse() {
    let mut request = delegated("Presence.Read");
    request.tenant = PERSONAL_ACCOUNT_TENANT;
    let principal = validate_at(t0(), &DEV.key.mint(&request, t0()).expect("mint")).expect("valid");
    assert_eq!(principal.tenant, PERSONAL_ACCOUNT_TENANT);
    assert_eq!(
        PERSONAL_ACCOUNT_TENANT.to_string(),
        "9188040d-6c67-4c5b-b112-36a304b66dad"
    );
}
