//! GET presence in every path form, `$select`, and getPresencesByUserId.

use serde_json::json;

use crate::helpers::*;

both! {
#[tokio::test]
async fn a_user_who_never_had_a_session_reads_offline_with_every_property() {
    let server = TestServer::start().await;
    let answer = server
        .get(&format!("/v1.0/users/{ADELE}/presence"), &server.app())
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let json = answer.json();
    assert_eq!(
        json["@odata.context"]
            .as_str()
            .unwrap()
            .split('#')
            .nth(1)
            .unwrap(),
        format!("users('{ADELE}')/presence/$entity")
    );
    assert_eq!(json["id"], ADELE);
    assert_eq!(json["availability"], "Offline");
    assert_eq!(json["activity"], "Offline");
    assert_eq!(json["statusMessage"], serde_json::Value::Null);
    assert_eq!(
        json["outOfOfficeSettings"],
        json!({"message": null, "isOutOfOffice": false})
    );
    assert_eq!(
        json["workLocation"],
        json!({"workLocationType": "unspecified", "source": "none", "placeId": null})
    );
    assert!(json["sequenceNumber"].is_string());
}
}

both! {
#[tokio::test]
async fn every_path_form_reads_the_same_presence() {
    let server = TestServer::start().await;
    let set = json!({"sessionId": APP, "availability": "Busy", "activity": "InACall"});
    server
        .post(
            &format!("/v1.0/users/{ADELE}/presence/setPresence"),
            &server.app(),
            set,
        )
        .await
        .assert_done();
    let adele = server.adele();
    let upper = ADELE.to_uppercase();
    for path in [
        "/v1.0/me/presence".to_string(),
        "/beta/me/presence".to_string(),
        format!("/v1.0/users/{ADELE}/presence"),
        format!("/beta/users/{upper}/presence"),
        format!("/v1.0/communications/presences/{ADELE}"),
        format!("/beta/communications/presences/{ADELE}"),
    ] {
        let answer = server.get(&path, &adele).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.text);
        let json = answer.json();
        assert_eq!(
            (
                json["id"].as_str(),
                json["availability"].as_str(),
                json["activity"].as_str()
            ),
            (Some(ADELE), Some("Busy"), Some("InACall")),
            "{path}"
        );
    }
}
}

both! {
#[tokio::test]
async fn select_returns_only_the_chosen_properties() {
    let server = TestServer::start().await;
    for query in [
        "$select=availability,activity",
        "%24select=availability,activity",
        "$select=Availability,ACTIVITY",
    ] {
        let answer = server
            .get(
                &format!("/v1.0/users/{ADELE}/presence?{query}"),
                &server.app(),
            )
            .await;
        assert_eq!(answer.status, 200, "{query}: {}", answer.text);
        let json = answer.json();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            ["@odata.context", "activity", "availability"],
            "{query}"
        );
        assert!(
            json["@odata.context"]
                .as_str()
                .unwrap()
                .ends_with("/presence(availability,activity)/$entity")
        );
    }
    let answer = server
        .get(
            &format!("/v1.0/users/{ADELE}/presence?$select=availability,mood"),
            &server.app(),
        )
        .await;
    let message = answer.assert_error(400, "BadRequest");
    assert!(message.contains("'mood'"), "{message}");
}
}

both! {
#[tokio::test]
async fn get_presences_by_user_id_keeps_order_answers_duplicates_once_and_leaves_out_strangers() {
    let server = TestServer::start().await;
    let set = json!({"sessionId": APP, "availability": "DoNotDisturb", "activity": "Presenting"});
    server
        .post(
            &format!("/v1.0/users/{MEGAN}/presence/setPresence"),
            &server.app(),
            set,
        )
        .await
        .assert_done();
    let ids = json!({"ids": [MEGAN, NOBODY, ADELE, OUTSIDER, MEGAN.to_uppercase()]});
    for path in [
        "/v1.0/communications/getPresencesByUserId",
        "/beta/communications/microsoft.graph.getPresencesByUserId",
    ] {
        let answer = server.post(path, &server.app(), ids.clone()).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        let json = answer.json();
        assert!(
            json["@odata.context"]
                .as_str()
                .unwrap()
                .ends_with("#Collection(microsoft.graph.presence)")
        );
        let got: Vec<(&str, &str, &str)> = json["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["id"].as_str().unwrap(),
                    p["availability"].as_str().unwrap(),
                    p["activity"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (MEGAN, "DoNotDisturb", "Presenting"),
                (ADELE, "Offline", "Offline")
            ]
        );
    }
}
}

both! {
#[tokio::test]
async fn get_presences_by_user_id_takes_one_to_650_guids() {
    let server = TestServer::start().await;
    let path = "/v1.0/communications/getPresencesByUserId";
    let ids = |n: usize| {
        (0..n)
            .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
            .collect::<Vec<_>>()
    };
    let answer = server
        .post(path, &server.app(), json!({"ids": ids(650)}))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json()["value"], json!([]));
    server
        .post(path, &server.app(), json!({"ids": ids(651)}))
        .await
        .assert_error(400, "InvalidArgument");
    server
        .post(path, &server.app(), json!({"ids": []}))
        .await
        .assert_error(400, "InvalidArgument");
    server
        .post(path, &server.app(), json!({}))
        .await
        .assert_error(400, "InvalidArgument");
    let message = server
        .post(
            path,
            &server.app(),
            json!({"ids": [ADELE, "adele.vance@contoso.com"]}),
        )
        .await
        .assert_error(400, "InvalidArgument");
    assert!(message.contains("adele.vance@contoso.com"), "{message}");
}
}

both! {
#[tokio::test]
async fn the_owner_sees_status_message_dates_and_others_see_only_the_message() {
    let server = TestServer::start().await;
    let body = json!({"statusMessage": {
        "message": {"content": "Hey I'm currently in a meeting.", "contentType": "text"},
        "expiryDateTime": {"dateTime": "2099-10-18T17:05:33.2079781", "timeZone": "Pacific Standard Time"}
    }});
    server
        .post("/v1.0/me/presence/setStatusMessage", &server.adele(), body)
        .await
        .assert_done();
    let own = server
        .get("/v1.0/me/presence", &server.adele())
        .await
        .json();
    let message = &own["statusMessage"];
    assert_eq!(
        message["message"],
        json!({"content": "Hey I'm currently in a meeting.", "contentType": "text"})
    );
    assert_eq!(
        message["expiryDateTime"],
        json!({"dateTime": "2099-10-18T17:05:33.2079781", "timeZone": "Pacific Standard Time"})
    );
    let published: jiff::Timestamp = message["publishedDateTime"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(published, server.now().await);

    let megan = server.token(TENANT, Some(MEGAN), "Presence.Read.All");
    let theirs = server
        .get(&format!("/v1.0/users/{ADELE}/presence"), &megan)
        .await
        .json();
    assert_eq!(
        theirs["statusMessage"],
        json!({"message": {"content": "Hey I'm currently in a meeting.", "contentType": "text"}})
    );
}
}

both! {
#[tokio::test]
async fn sessions_rank_do_not_disturb_over_busy_over_available_over_away() {
    let server = TestServer::start().await;
    let path = format!("/v1.0/users/{LEE}/presence/setPresence");
    let set = |session: &str, availability: &str, activity: &str| json!({"sessionId": session, "availability": availability, "activity": activity, "expirationDuration": "PT1H"});
    let steps = [
        (
            set("00000000-0000-4000-8000-000000000003", "Away", "Away"),
            ["Away", "Away"],
        ),
        (
            set(
                "00000000-0000-4000-8000-000000000002",
                "Available",
                "Available",
            ),
            ["Available", "Available"],
        ),
        (
            set("00000000-0000-4000-8000-000000000005", "Busy", "InACall"),
            ["Busy", "InACall"],
        ),
        (
            set(
                "00000000-0000-4000-8000-000000000001",
                "Busy",
                "InAConferenceCall",
            ),
            ["Busy", "InAConferenceCall"],
        ),
        (
            set(
                "00000000-0000-4000-8000-000000000004",
                "DoNotDisturb",
                "Presenting",
            ),
            ["DoNotDisturb", "Presenting"],
        ),
    ];
    for (body, expected) in steps {
        server.post(&path, &server.app(), body).await.assert_done();
        assert_eq!(server.presence_of(LEE).await, expected);
    }
    // The most recently refreshed session of the winning availability gives the activity.
    server
        .post(
            &format!("/v1.0/users/{LEE}/presence/clearPresence"),
            &server.app(),
            json!({"sessionId": "00000000-0000-4000-8000-000000000004"}),
        )
        .await
        .assert_done();
    assert_eq!(server.presence_of(LEE).await, ["Busy", "InAConferenceCall"]);
    server.advance("PT1S").await;
    server
        .post(
            &path,
            &server.app(),
            set("00000000-0000-4000-8000-000000000005", "Busy", "InACall"),
        )
        .await
        .assert_done();
    assert_eq!(server.presence_of(LEE).await, ["Busy", "InACall"]);
}
}
