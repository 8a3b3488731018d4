// MSAL for Node (@azure/msal-node), Azure Identity (@azure/identity) and the Microsoft Graph
// JavaScript client, unmodified, signing in with presenced's built-in identity provider over HTTPS
// on a non-443 port. The Rust test `sdk::node_auth_suite` starts presenced and runs this file with
// `node --test`, NODE_EXTRA_CA_CERTS naming presenced's development CA.
//
// What differs from an app that signs in with Entra ID: the authority (presenced's URL and the
// tenant) and `knownAuthorities` / `disableInstanceDiscovery`, which tell the libraries that this
// host is an authority of its own.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  ConfidentialClientApplication,
  CryptoProvider,
  PublicClientApplication,
} from "@azure/msal-node";
import { ClientSecretCredential } from "@azure/identity";
import { Client } from "@microsoft/microsoft-graph-client";

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is not set`);
  return value;
};
const URL_BASE = env("PRESENCED_URL");
const HOST = new URL(URL_BASE).host;
const TENANT = env("PRESENCED_TENANT");
const APP = env("PRESENCED_APP");
const APP_SECRET = env("PRESENCED_APP_SECRET");
const PUBLIC_APP = env("PRESENCED_PUBLIC_APP");
const REDIRECT_URI = env("PRESENCED_REDIRECT_URI");
const USER = env("PRESENCED_USER");
const USER_NAME = env("PRESENCED_USER_NAME");
const USER_PASSWORD = env("PRESENCED_USER_PASSWORD");
const AUTHORITY = `${URL_BASE}/${TENANT}`;
const PRESENCE_SCOPES = [
  "https://graph.microsoft.com/Presence.Read",
  "https://graph.microsoft.com/Presence.ReadWrite",
];

function graph(accessToken) {
  return Client.initWithMiddleware({
    authProvider: { getAccessToken: async () => accessToken },
    baseUrl: `${URL_BASE}/`,
    defaultVersion: "v1.0",
    customHosts: new Set([new URL(URL_BASE).hostname]),
  });
}

function claims(token) {
  return JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString());
}

test("msal-node client credentials: an app token that reads presence", async () => {
  const app = new ConfidentialClientApplication({
    auth: { clientId: APP, clientSecret: APP_SECRET, authority: AUTHORITY, knownAuthorities: [HOST] },
  });
  const result = await app.acquireTokenByClientCredential({
    scopes: ["https://graph.microsoft.com/.default"],
  });
  assert.equal(claims(result.accessToken).iss, `${URL_BASE}/${TENANT}/v2.0`);
  const presence = await graph(result.accessToken).api(`/users/${USER}/presence`).get();
  assert.equal(presence.id, USER);
});

test("msal-node username and password: a delegated token that sets presence", async () => {
  const app = new PublicClientApplication({
    auth: { clientId: PUBLIC_APP, authority: AUTHORITY, knownAuthorities: [HOST] },
  });
  const result = await app.acquireTokenByUsernamePassword({
    scopes: PRESENCE_SCOPES,
    username: USER_NAME,
    password: USER_PASSWORD,
  });
  assert.equal(result.account.homeAccountId, `${USER}.${TENANT}`);
  const client = graph(result.accessToken);
  await client
    .api("/me/presence/setPresence")
    .post({ sessionId: PUBLIC_APP, availability: "Busy", activity: "InACall" });
  const presence = await client.api("/me/presence").get();
  assert.equal(presence.availability, "Busy");
  assert.equal(presence.activity, "InACall");
});

/** Signs in through the authorize page as a browser would: fetch the form, post it, read the redirect. */
async function signInOverHttp(authCodeUrl) {
  const page = await fetch(authCodeUrl);
  assert.equal(page.status, 200);
  const html = await page.text();
  const form = new URLSearchParams();
  for (const match of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) {
    const value = match[2]
      .replaceAll("&quot;", '"')
      .replaceAll("&#39;", "'")
      .replaceAll("&lt;", "<")
      .replaceAll("&gt;", ">")
      .replaceAll("&amp;", "&");
    form.append(match[1], value);
  }
  form.append("username", USER_NAME);
  form.append("password", USER_PASSWORD);
  const answer = await fetch(authCodeUrl, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: form,
    redirect: "manual",
  });
  assert.equal(answer.status, 302, await answer.text());
  return new URL(answer.headers.get("location"));
}

test("msal-node authorization code with PKCE, then refresh", async () => {
  const app = new PublicClientApplication({
    auth: { clientId: PUBLIC_APP, authority: AUTHORITY, knownAuthorities: [HOST] },
  });
  const { verifier, challenge } = await new CryptoProvider().generatePkceCodes();
  const scopes = [...PRESENCE_SCOPES, "offline_access"];
  const authCodeUrl = await app.getAuthCodeUrl({
    scopes,
    redirectUri: REDIRECT_URI,
    codeChallenge: challenge,
    codeChallengeMethod: "S256",
    state: "node-state",
  });
  assert.ok(authCodeUrl.startsWith(`${AUTHORITY}/oauth2/v2.0/authorize?`), authCodeUrl);
  const redirect = await signInOverHttp(authCodeUrl);
  assert.equal(`${redirect.origin}${redirect.pathname}`, REDIRECT_URI);
  assert.equal(redirect.searchParams.get("state"), "node-state");
  const code = redirect.searchParams.get("code");
  assert.ok(code);

  const first = await app.acquireTokenByCode({
    code,
    scopes,
    redirectUri: REDIRECT_URI,
    codeVerifier: verifier,
  });
  assert.equal(first.account.username, USER_NAME);
  assert.equal(claims(first.idToken).aud, PUBLIC_APP);
  const presence = await graph(first.accessToken).api("/me/presence").get();
  assert.equal(presence.id, USER);

  // acquireTokenSilent with forceRefresh redeems the cached refresh token.
  const silent = await app.acquireTokenSilent({ account: first.account, scopes, forceRefresh: true });
  assert.notEqual(silent.accessToken, first.accessToken);
  await graph(silent.accessToken)
    .api("/me/presence/setUserPreferredPresence")
    .post({ availability: "Available", activity: "Available" });

  // acquireTokenByRefreshToken with the rotated refresh token from MSAL's cache.
  const cache = JSON.parse(app.getTokenCache().serialize());
  const refreshTokens = Object.values(cache.RefreshToken);
  assert.equal(refreshTokens.length, 1);
  const other = new PublicClientApplication({
    auth: { clientId: PUBLIC_APP, authority: AUTHORITY, knownAuthorities: [HOST] },
  });
  const byRefresh = await other.acquireTokenByRefreshToken({
    refreshToken: refreshTokens[0].secret,
    scopes: PRESENCE_SCOPES,
  });
  assert.equal(claims(byRefresh.accessToken).oid, USER);
});

test("azure-identity ClientSecretCredential with authorityHost", async () => {
  const credential = new ClientSecretCredential(TENANT, APP, APP_SECRET, {
    authorityHost: URL_BASE,
    disableInstanceDiscovery: true,
  });
  const token = await credential.getToken("https://graph.microsoft.com/.default");
  assert.ok(token.expiresOnTimestamp > Date.now());
  const presence = await graph(token.token).api(`/users/${USER}/presence`).get();
  assert.equal(presence.id, USER);
});
