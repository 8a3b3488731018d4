//! Directory reads: `/me`, `/users/{id | userPrincipalName}`, `/users` with
//! Graph's query options and paging, `$count`, photos, and Graph's 403s and
//! 404s.

use serde_json::{Value, json};

use crate::helpers::*;

async fn get_with(server: &TestServer, url: &str, token: &str, eventual: bool) -> Answer {
    let mut request = server.client.get(url).bearer_auth(token);
    if eventual {
        request = request.header("ConsistencyLevel", "eventual");
    }
    Answer::read(request.send().await.unwrap()).await
}

fn ids(page: &Value) -> Vec<String> {
    page["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect()
}

both! {
#[tokio::test]
async fn me_and_a_user_by_id_or_principal_name_read_in_graphs_shape() {
    let server = TestServer::start().await;
    let adele = server.token(TENANT, Some(ADELE), "User.Read");
    let me = server.get("/v1.0/me", &adele).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert!(
        me.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let expected = json!({
        "@odata.context": server.url("/v1.0/$metadata#users/$entity"),
        "businessPhones": ["+1 425 555 0109"],
        "displayName": "Adele Vance",
        "givenName": "Adele",
        "jobTitle": "Retail Manager",
        "mail": "adele.vance@contoso.com",
        "mobilePhone": null,
        "officeLocation": "18/2111",
        "preferredLanguage": "en-US",
        "surname": "Vance",
        "userPrincipalName": "adele.vance@contoso.com",
        "id": ADELE
    });
    assert_eq!(me.json(), expected);
    // Graph's member order.
    let order = [
        "@odata.context",
        "businessPhones",
        "displayName",
        "givenName",
        "jobTitle",
        "mail",
        "mobilePhone",
        "officeLocation",
        "preferredLanguage",
        "surname",
        "userPrincipalName",
        "id",
    ]
    .map(|name| me.text.find(&format!("\"{name}\":")).unwrap());
    assert!(order.is_sorted(), "{}", me.text);

    for path in [
        format!("/v1.0/users/{ADELE}"),
        "/v1.0/users/adele.vance@contoso.com".to_string(),
        "/beta/users/Adele.Vance%40contoso.com".to_string(),
    ] {
        let answer = server.get(&path, &adele).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.text);
        assert_eq!(answer.json()["id"], ADELE, "{path}");
    }

    // User.Read reads oneself only.
    let other = server.get(&format!("/v1.0/users/{MEGAN}"), &adele).await;
    let message = other.assert_error(403, "Authorization_RequestDenied");
    assert_eq!(
        message,
        "Insufficient privileges to complete the operation."
    );
    server
        .get("/v1.0/users", &adele)
        .await
        .assert_error(403, "Authorization_RequestDenied");
    // Presence scopes are not directory scopes.
    server
        .get("/v1.0/me", &server.adele())
        .await
        .assert_error(403, "Authorization_RequestDenied");

    // A user the directory does not have, by id, name, or in another tenant.
    let reader = server.token(TENANT, Some(ADELE), "User.ReadBasic.All");
    for id in [NOBODY, "nobody@contoso.com", OUTSIDER] {
        let answer = server.get(&format!("/v1.0/users/{id}"), &reader).await;
        let message = answer.assert_error(404, "Request_ResourceNotFound");
        assert_eq!(
            message,
            format!(
                "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
            )
        );
    }

    // /me needs a signed-in user.
    let app = server.token(TENANT, None, "User.Read.All");
    server
        .get("/v1.0/me", &app)
        .await
        .assert_error(400, "BadRequest");
    // Only GET.
    server
        .post("/v1.0/users", &app, json!({}))
        .await
        .assert_error(405, "MethodNotAllowed");
    // /users/{upn}/presence keeps decisions.md rule 14.
    server
        .get(
            "/v1.0/users/adele.vance@contoso.com/presence",
            &server.app(),
        )
        .await
        .assert_error(400, "BadRequest");
}
}

both! {
#[tokio::test]
async fn select_narrows_the_properties_and_basic_access_hides_the_rest() {
    let server = TestServer::start().await;
    let adele = server.token(TENANT, Some(ADELE), "User.Read");
    let answer = server.get("/v1.0/me?$select=displayName,id", &adele).await;
    assert_eq!(
        answer.json(),
        json!({
            "@odata.context": server.url("/v1.0/$metadata#users(displayName,id)/$entity"),
            "displayName": "Adele Vance",
            "id": ADELE
        })
    );
    let answer = server.get("/v1.0/me?%24select=shoeSize", &adele).await;
    let message = answer.assert_error(400, "Request_BadRequest");
    assert!(message.contains("shoeSize"), "{message}");

    let basic = server.token(TENANT, None, "User.ReadBasic.All");
    let answer = server.get(&format!("/v1.0/users/{ADELE}"), &basic).await;
    let json = answer.json();
    assert_eq!(json["mail"], "adele.vance@contoso.com");
    assert_eq!(json["jobTitle"], Value::Null);
    assert_eq!(json["officeLocation"], Value::Null);
    assert_eq!(json["businessPhones"], json!([]));
}
}

both! {
#[tokio::test]
async fn the_user_list_pages_filters_counts_and_searches() {
    let server = TestServer::start().await;
    let app = server.token(TENANT, None, "User.Read.All");
    let everyone = {
        let mut all = vec![ADELE.to_string(), MEGAN.to_string(), LEE.to_string()];
        all.sort();
        all
    };

    // Paging: $top and @odata.nextLink, followed as given.
    let first = server
        .get("/v1.0/users?$top=2&$select=id,displayName", &app)
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    let first = first.json();
    assert_eq!(
        first["@odata.context"],
        server.url("/v1.0/$metadata#users(id,displayName)")
    );
    assert_eq!(first["value"].as_array().unwrap().len(), 2);
    let next = first["@odata.nextLink"].as_str().unwrap().to_string();
    assert!(next.starts_with(&server.url("/v1.0/users?")), "{next}");
    assert!(next.contains("$skiptoken="), "{next}");
    let second = get_with(&server, &next, &app, false).await.json();
    assert!(second.get("@odata.nextLink").is_none(), "{second}");
    let mut seen = ids(&first);
    seen.extend(ids(&second));
    seen.sort();
    assert_eq!(seen, everyone);
    assert_eq!(
        second["value"][0].as_object().unwrap().len(),
        2,
        "$select carries over: {second}"
    );

    // $top out of range, a forged skiptoken.
    for query in ["$top=0", "$top=1000", "$top=x", "$skiptoken=forged"] {
        server
            .get(&format!("/v1.0/users?{query}"), &app)
            .await
            .assert_error(400, "Request_BadRequest");
    }

    // $filter: startswith on names, id in (...), joined with or.
    assert_eq!(
        filtered(&server, &app, "startswith(displayName,'ad')").await,
        [ADELE]
    );
    assert_eq!(
        filtered(&server, &app, "startswith(userPrincipalName,'LEE.')").await,
        [LEE]
    );
    let mut two = vec![ADELE.to_string(), MEGAN.to_string()];
    two.sort();
    assert_eq!(
        filtered(
            &server,
            &app,
            "startswith(displayName,'Adele') or startswith(displayName,'Megan')"
        )
        .await,
        two
    );
    assert_eq!(
        filtered(
            &server,
            &app,
            &format!("id in ('{ADELE}','{MEGAN}','{NOBODY}')")
        )
        .await,
        two
    );
    let answer = server
        .get("/v1.0/users?$filter=department%20eq%20'x'", &app)
        .await;
    answer.assert_error(400, "Request_UnsupportedQuery");
    let answer = server
        .get("/v1.0/users?$filter=startswith(displayName", &app)
        .await;
    answer.assert_error(400, "BadRequest");

    // $count needs ConsistencyLevel: eventual.
    let counted = server.url("/v1.0/users?$count=true&$top=1");
    get_with(&server, &counted, &app, false)
        .await
        .assert_error(400, "Request_BadRequest");
    let page = get_with(&server, &counted, &app, true).await.json();
    assert_eq!(page["@odata.count"], 3);
    assert_eq!(page["value"].as_array().unwrap().len(), 1);
    let count = server.url("/v1.0/users/$count");
    get_with(&server, &count, &app, false)
        .await
        .assert_error(400, "Request_BadRequest");
    let answer = get_with(&server, &count, &app, true).await;
    assert_eq!(answer.status, 200);
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(answer.text, "3");
    let answer = get_with(
        &server,
        &server.url(&format!(
            "/v1.0/users/%24count?$filter={}",
            percent_encode("startswith(displayName,'l')")
        )),
        &app,
        true,
    )
    .await;
    assert_eq!(answer.text, "1");

    // $search needs it too.
    let search = server.url(&format!(
        "/v1.0/users?$search={}",
        percent_encode("\"displayName:bowen\"")
    ));
    get_with(&server, &search, &app, false)
        .await
        .assert_error(400, "Request_UnsupportedQuery");
    let found = get_with(&server, &search, &app, true).await.json();
    assert_eq!(ids(&found), [MEGAN]);

    // $orderby.
    let ordered = server
        .get(
            "/v1.0/users?$orderby=displayName%20desc&$select=displayName",
            &app,
        )
        .await
        .json();
    let names: Vec<&str> = ordered["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["displayName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Megan Bowen", "Lee Gu", "Adele Vance"]);

    // The other tenant's app sees its own users only.
    let outsider = server.token(OTHER_TENANT, None, "User.Read.All");
    let theirs = server.get("/v1.0/users", &outsider).await.json();
    assert_eq!(ids(&theirs), [OUTSIDER]);
}
}

both! {
#[tokio::test]
async fn photos_are_not_found_like_graphs_users_without_one() {
    let server = TestServer::start().await;
    let adele = server.token(TENANT, Some(ADELE), "User.Read User.ReadBasic.All");
    for path in [
        "/v1.0/me/photo/$value".to_string(),
        "/v1.0/me/photo".to_string(),
        format!("/beta/users/{MEGAN}/photo/%24value"),
        "/v1.0/users/megan.bowen@contoso.com/photo".to_string(),
    ] {
        let answer = server.get(&path, &adele).await;
        let message = answer.assert_error(404, "ImageNotFound");
        assert_eq!(message, "The photo wasn't found.", "{path}");
    }
    server
        .get(&format!("/v1.0/users/{NOBODY}/photo/$value"), &adele)
        .await
        .assert_error(404, "Request_ResourceNotFound");
    let no_directory = server.token(TENANT, Some(ADELE), "Presence.Read");
    server
        .get(&format!("/v1.0/users/{MEGAN}/photo/$value"), &no_directory)
        .await
        .assert_error(403, "Authorization_RequestDenied");
}
}

async fn filtered(server: &TestServer, app: &str, filter: &str) -> Vec<String> {
    let url = server.url(&format!("/v1.0/users?$filter={}", percent_encode(filter)));
    let answer = get_with(server, &url, app, false).await;
    assert_eq!(answer.status, 200, "{filter}: {}", answer.text);
    let mut found = ids(&answer.json());
    found.sort();
    found
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
