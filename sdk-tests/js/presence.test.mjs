// The official JavaScript client (@microsoft/microsoft-graph-client), unmodified, against presenced
// over HTTPS. The Rust test `sdk::js_sdk_suite` starts presenced and runs this file with
// `node --test`, NODE_EXTRA_CA_CERTS naming presenced's development CA; the other PRESENCED_*
// variables say where presenced is and who may call it (see sdk-tests/python/test_presence.py).
//
// Two settings differ from an app that talks to Microsoft Graph: where the token comes from (the
// token endpoint of presenced's built-in identity provider) and the base URL (with its host allowed).

import assert from "node:assert/strict";
import { test } from "node:test";
import { Client, GraphError, RetryHandlerOptions } from "@microsoft/microsoft-graph-client";

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is not set`);
  return value;
};
const URL_BASE = env("PRESENCED_URL");
const TENANT = env("PRESENCED_TENANT");
const APP = env("PRESENCED_APP");
const USER = env("PRESENCED_USER");
const OTHER_USER = env("PRESENCED_OTHER_USER");
const NOBODY = env("PRESENCED_NOBODY");

async function token(tenant, app, secret) {
  const response = await fetch(`${URL_BASE}/${tenant}/oauth2/v2.0/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "client_credentials",
      client_id: app,
      client_secret: secret,
      scope: "https://graph.microsoft.com/.default",
    }),
  });
  const body = await response.json();
  assert.equal(response.status, 200, JSON.stringify(body));
  return body.access_token;
}

function client(tenant = TENANT, app = APP, secret = env("PRESENCED_APP_SECRET")) {
  let cached;
  return Client.initWithMiddleware({
    authProvider: { getAccessToken: async () => (cached ??= await token(tenant, app, secret)) },
    baseUrl: `${URL_BASE}/`,
    defaultVersion: "v1.0",
    customHosts: new Set([new URL(URL_BASE).hostname]),
  });
}

async function graphError(promise) {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof GraphError, String(error));
    return error;
  }
  assert.fail("the call succeeded");
}

test("setPresence, reads in every form, clearPresence", async () => {
  const graph = client();
  const presence = `/users/${USER}/presence`;
  await graph.api(`${presence}/setPresence`).post({ sessionId: APP, availability: "Busy", activity: "InACall", expirationDuration: "PT1H" });
  const read = await graph.api(presence).get();
  assert.deepEqual([read.id, read.availability, read.activity], [USER, "Busy", "InACall"]);
  assert.ok(read["@odata.context"]);
  const byId = await graph.api(`/communications/presences/${USER}`).get();
  assert.equal(byId.activity, "InACall");
  const selected = await graph.api(presence).select(["availability", "activity"]).get();
  assert.deepEqual(Object.keys(selected).sort(), ["@odata.context", "activity", "availability"]);
  await graph.api(`${presence}/clearPresence`).post({ sessionId: APP });
  assert.equal((await graph.api(presence).get()).availability, "Offline");
});

test("preferred presence, status message and clearing with an empty body", async () => {
  const graph = client();
  const presence = `/users/${OTHER_USER}/presence`;
  await graph.api(`${presence}/setPresence`).post({ sessionId: APP, availability: "Available", activity: "Available" });
  await graph.api(`${presence}/setUserPreferredPresence`).post({ availability: "Away", activity: "Away", expirationDuration: "P1DT2H30M15S" });
  assert.equal((await graph.api(presence).get()).availability, "Away");
  await graph.api(`${presence}/clearUserPreferredPresence`).post();
  assert.equal((await graph.api(presence).get()).availability, "Available");
  await graph.api(`${presence}/setStatusMessage`).post({
    statusMessage: {
      message: { content: "Hey I'm currently in a meeting.", contentType: "text" },
      expiryDateTime: { dateTime: "2099-01-01T17:00:00.0000000", timeZone: "Pacific Standard Time" },
    },
  });
  assert.equal((await graph.api(presence).get()).statusMessage.message.content, "Hey I'm currently in a meeting.");
});

test("getPresencesByUserId keeps the order", async () => {
  const result = await client().api("/communications/getPresencesByUserId").post({ ids: [OTHER_USER, USER] });
  assert.deepEqual(result.value.map((p) => p.id), [OTHER_USER, USER]);
});

test("a bad pair is a GraphError with Graph's code and request id", async () => {
  const error = await graphError(client().api(`/users/${USER}/presence/setPresence`).post({ sessionId: APP, availability: "Busy", activity: "Busy" }));
  assert.equal(error.statusCode, 400);
  assert.equal(error.code, "InvalidArgument");
  assert.match(error.message, /Busy\/Busy/);
  assert.ok(error.requestId);
});

test("an unknown user is NotFound", async () => {
  const error = await graphError(client().api(`/users/${NOBODY}/presence`).get());
  assert.deepEqual([error.statusCode, error.code], [404, "NotFound"]);
});

test("a missing permission is Forbidden", async () => {
  const reader = client(TENANT, env("PRESENCED_READER_APP"), env("PRESENCED_READER_SECRET"));
  assert.equal((await reader.api(`/users/${USER}/presence`).get()).id, USER);
  const error = await graphError(reader.api(`/users/${USER}/presence/setPresence`).post({ sessionId: APP, availability: "Away", activity: "Away" }));
  assert.deepEqual([error.statusCode, error.code], [403, "Forbidden"]);
  assert.match(error.message, /Presence\.ReadWrite\.All/);
});

test("throttling is TooManyRequests, and the client's retry then succeeds", async () => {
  const graph = client(env("PRESENCED_THROTTLED_TENANT"), env("PRESENCED_THROTTLED_APP"), env("PRESENCED_THROTTLED_SECRET"));
  const presence = `/users/${env("PRESENCED_THROTTLED_USER")}/presence`;
  await graph.api(presence).get();
  await graph.api(presence).get();
  const error = await graphError(graph.api(presence).middlewareOptions([new RetryHandlerOptions(0, 0)]).get());
  assert.deepEqual([error.statusCode, error.code], [429, "TooManyRequests"]);
  assert.ok(Number(error.headers.get("retry-after")) >= 1);
  const read = await graph.api(presence).get();
  assert.equal(read.id, env("PRESENCED_THROTTLED_USER"));
});
