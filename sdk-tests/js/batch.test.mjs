// JSON batching with the official JavaScript client's BatchRequestContent and
// BatchResponseContent, unmodified, against presenced (see presence.test.mjs for the setup).

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  BatchRequestContent,
  BatchResponseContent,
  Client,
} from "@microsoft/microsoft-graph-client";

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is not set`);
  return value;
};
const URL_BASE = env("PRESENCED_URL");
const TENANT = env("PRESENCED_TENANT");
const APP = env("PRESENCED_APP");
const USER = env("PRESENCED_USER");
const NOBODY = env("PRESENCED_NOBODY");

async function token() {
  const response = await fetch(`${URL_BASE}/${TENANT}/oauth2/v2.0/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "client_credentials",
      client_id: APP,
      client_secret: env("PRESENCED_APP_SECRET"),
      scope: "https://graph.microsoft.com/.default",
    }),
  });
  const body = await response.json();
  assert.equal(response.status, 200, JSON.stringify(body));
  return body.access_token;
}

test("BatchRequestContent: a write, the reads that depend on it, and a failed dependency", async () => {
  const bearer = await token();
  const client = Client.initWithMiddleware({
    authProvider: { getAccessToken: async () => bearer },
    baseUrl: `${URL_BASE}/`,
    defaultVersion: "v1.0",
    customHosts: new Set([new URL(URL_BASE).hostname]),
  });
  const graph = (path, init) => new Request(`${URL_BASE}/v1.0${path}`, init);
  const content = new BatchRequestContent([
    {
      id: "set",
      request: graph(`/users/${USER}/presence/setPresence`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ sessionId: APP, availability: "Away", activity: "Away" }),
      }),
    },
    { id: "read", request: graph(`/users/${USER}/presence`), dependsOn: ["set"] },
    // The client allows serial dependencies only: each request depends on the one before.
    { id: "nobody", request: graph(`/users/${NOBODY}/presence`), dependsOn: ["read"] },
    { id: "after-nobody", request: graph(`/users/${USER}/presence`), dependsOn: ["nobody"] },
  ]);
  const batch = new BatchResponseContent(await client.api("/$batch").post(await content.getContent()));

  assert.equal(batch.getResponseById("set").status, 200);
  const read = batch.getResponseById("read");
  assert.equal(read.status, 200);
  const presence = await read.json();
  assert.deepEqual([presence.id, presence.availability, presence.activity], [USER, "Away", "Away"]);
  const nobody = batch.getResponseById("nobody");
  assert.equal(nobody.status, 404);
  assert.equal((await nobody.json()).error.code, "NotFound");
  assert.equal(batch.getResponseById("after-nobody").status, 424);
});
