// A single-page app as a customer would write it: it signs in, reads and
// sets presence with fetch and the bearer token, and shows the Graph
// Toolkit's mgt-person presence badges. Everything points at presenced
// instead of Microsoft's cloud; config.json (served beside this page) says
// where it is and how to sign in:
// - "msal": MSAL.js, authorization code with PKCE (redirect), the way a
//   single-page app signs in with Entra ID;
// - "password": the resource-owner password grant, posted by the page to the
//   token endpoint (Entra allows it for public clients; no redirect).
import { PublicClientApplication } from '@azure/msal-browser';
import {
  CacheService,
  Providers,
  ProviderState,
  SimpleProvider,
} from '@microsoft/mgt-element';
import { registerMgtPersonComponent } from '@microsoft/mgt-components';

const config = await (await fetch('config.json')).json();
const graph = `${config.presencedUrl}/v1.0`;
const authority = `${config.presencedUrl}/${config.tenant}`;
const scopes = [
  'Presence.Read',
  'Presence.Read.All',
  'Presence.ReadWrite',
  'User.ReadBasic.All',
];

const $ = (id) => document.getElementById(id);

function showError(error) {
  $('error').textContent += `${error?.stack ?? error}\n`;
}

// Sign-in with MSAL.js. `start` answers the signed-in user's token source,
// or null after showing the way to sign in.
const msalSignIn = {
  async start() {
    const msal = new PublicClientApplication({
      auth: {
        clientId: config.clientId,
        authority,
        knownAuthorities: [new URL(config.presencedUrl).host],
        redirectUri: `${location.origin}/`,
      },
      cache: { cacheLocation: 'sessionStorage' },
    });
    await msal.initialize();
    const redirect = await msal.handleRedirectPromise();
    const account = redirect?.account ?? msal.getAllAccounts()[0];
    if (!account) {
      $('msal-sign-in').hidden = false;
      $('sign-in').onclick = () =>
        msal.loginRedirect({ scopes: ['openid', 'profile', 'offline_access', ...scopes] }).catch(showError);
      return null;
    }
    msal.setActiveAccount(account);
    return {
      token: async () => (await msal.acquireTokenSilent({ scopes, account })).accessToken,
      signOut: () => msal.logoutRedirect({ postLogoutRedirectUri: `${location.origin}/` }),
    };
  },
};

// Sign-in with the password grant; the token is kept for the tab's life.
const passwordSignIn = {
  async start() {
    const kept = JSON.parse(sessionStorage.getItem('presence-board-token') ?? 'null');
    if (!kept || kept.expiresAt < Date.now()) {
      $('password-sign-in').hidden = false;
      $('password-sign-in').onsubmit = (event) => {
        event.preventDefault();
        this.signIn().catch(showError);
      };
      return null;
    }
    return {
      token: async () => kept.accessToken,
      signOut: async () => {
        sessionStorage.removeItem('presence-board-token');
        location.reload();
      },
    };
  },
  async signIn() {
    const response = await fetch(`${authority}/oauth2/v2.0/token`, {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: 'password',
        client_id: config.clientId,
        username: $('username').value,
        password: $('password').value,
        scope: scopes.join(' '),
      }),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(`sign-in: ${answer.error}: ${answer.error_description}`);
    sessionStorage.setItem(
      'presence-board-token',
      JSON.stringify({
        accessToken: answer.access_token,
        expiresAt: Date.now() + (answer.expires_in - 300) * 1000,
      }),
    );
    location.reload();
  },
};

let session;
let me;

async function callGraph(method, path, body) {
  const response = await fetch(`${graph}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${await session.token()}`,
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  // The presence actions answer 200 with no body.
  return text ? JSON.parse(text) : null;
}

async function showMyPresence() {
  const presence = await callGraph('GET', '/me/presence');
  $('me-presence').textContent = `${presence.availability} / ${presence.activity}`;
}

// The page is a presence session of its own (setPresence with its client
// id), as a softphone or chat client would be: preferred presence shows only
// while the user has a session.
async function announceSession() {
  await callGraph('POST', `/users/${me.id}/presence/setPresence`, {
    sessionId: config.clientId,
    availability: 'Available',
    activity: 'Available',
    expirationDuration: 'PT1H',
  });
}

// The user's own choice, as Teams' status menu sets it.
async function setMyPresence(availability) {
  await callGraph('POST', `/users/${me.id}/presence/setUserPreferredPresence`, {
    availability,
    activity: availability,
    expirationDuration: 'PT8H',
  });
  await showMyPresence();
}

// The Graph Toolkit's provider: tokens from the sign-in, requests to
// presenced. IProvider's baseURL setter accepts Microsoft's clouds only, and
// the provider builds its Graph client in its constructor, so both getters
// are overridden: the client's base URL is presenced, and customHosts lets
// it attach the token to requests there.
class PresencedProvider extends SimpleProvider {
  get baseURL() {
    return config.presencedUrl;
  }

  get customHosts() {
    return [new URL(config.presencedUrl).hostname];
  }
}

function showPeople() {
  const provider = new PresencedProvider(() => session.token());
  Providers.globalProvider = provider;
  provider.setState(ProviderState.SignedIn);
  // Every badge is read from presenced when the page loads.
  CacheService.config.isEnabled = false;
  registerMgtPersonComponent();
  for (const id of config.people) {
    const person = document.createElement('mgt-person');
    person.setAttribute('user-id', id);
    person.setAttribute('view', 'twolines');
    person.toggleAttribute('show-presence', true);
    $('people').append(person);
  }
}

try {
  const signIn = config.signIn === 'password' ? passwordSignIn : msalSignIn;
  session = await signIn.start();
  if (session) {
    me = await callGraph('GET', '/me?$select=id,displayName');
    $('me-name').textContent = me.displayName;
    $('signed-in').hidden = false;
    $('set-busy').onclick = () => setMyPresence('Busy').catch(showError);
    $('set-available').onclick = () => setMyPresence('Available').catch(showError);
    $('sign-out').onclick = () => session.signOut().catch(showError);
    await announceSession();
    await showMyPresence();
    showPeople();
  }
} catch (error) {
  showError(error);
}
