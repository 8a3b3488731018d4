//! Minted tokens: their shape, and that they validate.

use crate::*;

#[test]
fn delegated_tokens_round_trip() {
    let token = mint(&delegated("Presence.Read Presence.ReadWrite"));
    let principal = validate_at(t0(), &token).expect("valid");
    assert_eq!(principal.tenant, guid(TENANT));
    assert_eq!(&*principal.app, APP);
    assert_eq!(principal.user, Some(guid(USER)));
    assert!(principal.is_delegated());
    assert_eq!(
        principal.kind,
        PrincipalKind::Delegated {
            scopes: vec!["Presence.Read".into(), "Presence.ReadWrite".into()].into()
        }
    );
    assert!(principal.has_scope("presence.readwrite"));
    assert!(!principal.has_scope("Presence.Read.All"));
    assert!(!principal.has_role("Presence.Read"));
}

#[test]
fn application_tokens_round_trip() {
    let token = mint(&application(&["Presence.ReadWrite.All"]));
    let principal = validate_at(t0(), &token).expect("valid");
    assert_eq!(principal.tenant, guid(TENANT));
    assert_eq!(&*principal.app, APP);
    assert_eq!(principal.user, None);
    assert!(!principal.is_delegated());
    assert!(principal.has_role("Presence.ReadWrite.All"));
    assert!(!principal.has_scope("Presence.ReadWrite.All"));

    let without_roles = validate_at(t0(), &mint(&application(&[]))).expect("valid");
    assert_eq!(
        without_roles.kind,
        PrincipalKind::Application {
            roles: Vec::new().into()
        }
    );
}

#[test]
fn minted_tokens_look_like_entra_v2_access_tokens() {
    let token = mint(&delegated("Presence.Read User.Read"));
    let [header, claims] = <[Value; 2]>::try_from(segments(&token)).expect("two segments");
    assert_eq!(
        header,
        json!({"typ": "JWT", "alg": "RS256", "kid": DEV.key.kid()})
    );
    let now = t0().as_second();
    assert_eq!(claims["aud"], GRAPH_AUDIENCE);
    assert_eq!(
        claims["iss"],
        format!("https://login.presenced.local/{TENANT}/v2.0")
    );
    assert_eq!(claims["iss"], dev_issuer(guid(TENANT)));
    assert_eq!(claims["tid"], TENANT);
    assert_eq!(claims["oid"], USER);
    assert_eq!(claims["sub"], USER);
    assert_eq!(claims["scp"], "Presence.Read User.Read");
    assert_eq!(claims["appid"], APP);
    assert_eq!(claims["azp"], APP);
    assert_eq!(claims["idtyp"], "user");
    assert_eq!(claims["ver"], "2.0");
    assert_eq!(
        (
            claims["iat"].as_i64(),
            claims["nbf"].as_i64(),
            claims["exp"].as_i64()
        ),
        (Some(now), Some(now), Some(now + 3600))
    );
    assert_eq!(claims["uti"].as_str().map(str::len), Some(22));
    assert!(claims.get("roles").is_none());

    let app = &segments(&mint(&application(&["Presence.ReadWrite.All"])))[1];
    assert_eq!(app["idtyp"], "app");
    assert_eq!(app["roles"], json!(["Presence.ReadWrite.All"]));
    assert_eq!(
        app["oid"],
        service_principal_id(guid(TENANT), guid(APP)).to_string()
    );
    assert_eq!(app["sub"], app["oid"]);
    assert!(app.get("scp").is_none());
}

#[test]
fn the_published_jwks_verifies_minted_tokens_with_a_stock_library() {
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(DEV.key.jwks_json()).expect("JWK set");
    let jwk = jwks.find(DEV.key.kid()).expect("the kid is published");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).expect("decoding key");
    let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
    validation.set_audience(&[GRAPH_AUDIENCE]);
    let token = DEV
        .key
        .mint(&delegated("Presence.Read"), Timestamp::now())
        .expect("mint");
    jsonwebtoken::decode::<Value>(&token, &key, &validation).expect("valid for jsonwebtoken");
}

#[test]
fn the_key_is_the_same_on_every_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("keys")).expect("mkdir");
    std::fs::copy(DEV.key.path(), dir.path().join("keys/issuer-rs256.pem")).expect("copy");
    let reloaded = DevIssuerKey::load_or_create(dir.path()).expect("load");
    assert_eq!(reloaded.kid(), DEV.key.kid());
    assert_ne!(OTHER.key.kid(), DEV.key.kid());
}

#[test]
fn mint_refuses_unusable_requests() {
    let mut request = delegated("");
    assert!(DEV.key.mint(&request, t0()).is_err(), "no scopes");
    request = delegated("Presence.Read");
    request.lifetime = SignedDuration::ZERO;
    assert!(DEV.key.mint(&request, t0()).is_err(), "no lifetime");
    request = application(&["Presence Read"]);
    assert!(DEV.key.mint(&request, t0()).is_err(), "a role with a space");
}
