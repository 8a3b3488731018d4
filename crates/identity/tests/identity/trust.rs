//! Signatures, algorithms, issuers and audiences: whom a token is trusted from.

use crate::*;

#[test]
fn tampered_tokens_are_refused() {
    let token = mint(&delegated("Presence.Read"));
    let (signing_input, signature) = token.rsplit_once('.').unwrap();

    let mut flipped = URL_SAFE_NO_PAD.decode(signature).unwrap();
    flipped[10] ^= 1;
    let bad_signature = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(flipped));
    assert_eq!(
        validate_at(t0(), &bad_signature).err(),
        Some(AuthError::InvalidSignature)
    );

    let mut claims = minted_claims();
    claims["scp"] = json!("Presence.Read.All");
    let header = token.split('.').next().unwrap();
    let forged = format!(
        "{header}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    assert_eq!(
        validate_at(t0(), &forged).err(),
        Some(AuthError::InvalidSignature)
    );

    let truncated = format!("{signing_input}.{}", &signature[..signature.len() - 4]);
    assert_eq!(
        validate_at(t0(), &truncated).err(),
        Some(AuthError::InvalidSignature)
    );
}

#[test]
fn tokens_signed_by_another_key_are_refused() {
    // Under its own kid: the issuer has no such key.
    let theirs = OTHER
        .key
        .mint(&delegated("Presence.Read"), t0())
        .expect("mint");
    assert_eq!(
        validate_at(t0(), &theirs).err(),
        Some(AuthError::UnknownSigningKey)
    );
    // Claiming the dev key's kid: the signature does not verify.
    let impostor = sign_with(&OTHER.signer, DEV.key.kid(), &minted_claims());
    assert_eq!(
        validate_at(t0(), &impostor).err(),
        Some(AuthError::InvalidSignature)
    );
    // Without a kid, the dev issuer's only key is tried.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = None;
    let anonymous = jsonwebtoken::encode(&header, &minted_claims(), &OTHER.signer).expect("sign");
    assert_eq!(
        validate_at(t0(), &anonymous).err(),
        Some(AuthError::InvalidSignature)
    );
    let anonymous = jsonwebtoken::encode(&header, &minted_claims(), &DEV.signer).expect("sign");
    assert!(validate_at(t0(), &anonymous).is_ok());
}

#[test]
fn unsigned_and_hmac_tokens_are_refused() {
    let claims = URL_SAFE_NO_PAD.encode(minted_claims().to_string());
    for alg in ["none", "None", "NONE"] {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "typ": "JWT"}).to_string());
        for signature in ["", "c2ln"] {
            let token = format!("{header}.{claims}.{signature}");
            assert_eq!(
                validate_at(t0(), &token).err(),
                Some(AuthError::UnsupportedAlgorithm(alg.into())),
                "{alg}"
            );
        }
    }
    // The classic confusion: HMAC keyed with the issuer's public key, which anyone can fetch.
    let public_key = serde_json::to_vec(&DEV.key.jwks_json()).unwrap();
    for (alg, name) in [
        (Algorithm::HS256, "HS256"),
        (Algorithm::HS384, "HS384"),
        (Algorithm::HS512, "HS512"),
    ] {
        let mut header = Header::new(alg);
        header.kid = Some(DEV.key.kid().to_owned());
        let secret = EncodingKey::from_secret(&public_key).expect("secret");
        let token = jsonwebtoken::encode(&header, &minted_claims(), &secret).expect("sign");
        assert_eq!(
            validate_at(t0(), &token).err(),
            Some(AuthError::UnsupportedAlgorithm(name.into()))
        );
    }
}

#[test]
fn issuers_must_be_trusted_and_name_the_tokens_tenant() {
    let check = |iss: &str, expected: Option<AuthError>| {
        let token = edited(|claims| {
            claims.insert("iss".into(), json!(iss));
        });
        assert_eq!(validate_at(t0(), &token).err(), expected, "{iss}");
    };
    check(
        &format!("https://login.presenced.local/{TENANT}/v2.0"),
        None,
    );
    check(
        &format!(
            "https://login.presenced.local/{}/v2.0",
            TENANT.to_uppercase()
        ),
        None,
    );
    // The dev key's tokens may name any plain origin (the built-in provider names the URL it was
    // reached at); the tenant segment must still be the token's tid.
    check(&format!("https://127.0.0.1:8443/{TENANT}/v2.0"), None);
    check(
        "https://127.0.0.1:8443/9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d/v2.0",
        Some(AuthError::UntrustedIssuer),
    );
    check(
        &format!("https://sts.windows.net/{TENANT}/"),
        Some(AuthError::UntrustedIssuer),
    );
    check(
        &format!("https://login.presenced.local/{PERSONAL_ACCOUNT_TENANT}/v2.0"),
        Some(AuthError::UntrustedIssuer),
    );
    check(
        "https://login.presenced.local/common/v2.0",
        Some(AuthError::UntrustedIssuer),
    );

    let no_iss = edited(|claims| {
        claims.remove("iss");
    });
    assert_eq!(
        validate_at(t0(), &no_iss).err(),
        Some(AuthError::MissingClaim("iss"))
    );
}

#[test]
fn the_audience_must_be_microsoft_graph() {
    let check = |aud: Value, expected: Option<AuthError>| {
        let token = edited(|claims| {
            claims.insert("aud".into(), aud.clone());
        });
        assert_eq!(validate_at(t0(), &token).err(), expected, "{aud}");
    };
    check(json!(GRAPH_AUDIENCE), None);
    check(json!(GRAPH_APP_ID), None);
    check(json!(["api://other", GRAPH_AUDIENCE]), None);
    check(json!("api://other"), Some(AuthError::InvalidAudience));
    check(
        json!("https://graph.microsoft.com/"),
        Some(AuthError::InvalidAudience),
    );
    check(json!([]), Some(AuthError::InvalidAudience));
    check(
        json!(42),
        Some(AuthError::InvalidClaim {
            claim: "aud",
            expected: "a string or an array of strings",
        }),
    );
    check(Value::Null, Some(AuthError::MissingClaim("aud")));
}
