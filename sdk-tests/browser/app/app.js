// A single-page app as a customer would write it: MSAL.js signs in with the
// authorization code flow and PKCE (redirect), presence is read and set with
// fetch and the bearer token, and the Graph Toolkit's mgt-person shows
// presence badges. Everything points at presenced instead of Microsoft's
// cloud; config.json (served beside this page) says where it is.
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
const scopes = [
  'Presence.Read',
  'Presence.Read.All',
  'Presence.ReadWrite',
  'User.ReadBasic.All',
];

const msal = new PublicClientApplication({
  auth: {
    clientId: config.clientId,
    authority: `${config.presencedUrl}/${config.tenant}`,
    knownAuthorities: [new URL(config.presencedUrl).host],
    redirectUri: `${location.origin}/`,
  },
  cache: { cacheLocation: 'sessionStorage' },
});

const $ = (id) => document.getElementById(id);

function showError(error) {
  $('error').textContent += `${error?.stack ?? error}\n`;
}

async function token() {
  const result = await msal.acquireTokenSilent({
    scopes,
    account: msal.getActiveAccount(),
  });
  return result.accessToken;
}

async function callGraph(method, path, body) {
  const response = await fetch(`${graph}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${await token()}`,
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

const myId = () => msal.getActiveAccount().localAccountId;

// The page is a presence session of its own (setPresence with its client
// id), as a softphone or chat client would be: preferred presence shows only
// while the user has a session.
async function announceSession() {
  await callGraph('POST', `/users/${myId()}/presence/setPresence`, {
    sessionId: config.clientId,
    availability: 'Available',
    activity: 'Available',
    expirationDuration: 'PT1H',
  });
}

// The user's own choice, as Teams' status menu sets it.
async function setMyPresence(availability) {
  await callGraph('POST', `/users/${myId()}/presence/setUserPreferredPresence`, {
    availability,
    activity: availability,
    expirationDuration: 'PT8H',
  });
  await showMyPresence();
}

// The Graph Toolkit's provider: tokens from MSAL, requests to presenced.
// IProvider's baseURL setter accepts Microsoft's clouds only, and the
// provider builds its Graph client in its constructor, so both getters are
// overridden: the client's base URL is presenced, and customHosts lets it
// attach the token to requests there.
class PresencedProvider extends SimpleProvider {
  get baseURL() {
    return config.presencedUrl;
  }

  get customHosts() {
    return [new URL(config.presencedUrl).hostname];
  }
}

function showPeople() {
  const provider = new PresencedProvider(() => token());
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
  await msal.initialize();
  const redirect = await msal.handleRedirectPromise();
  const account = redirect?.account ?? msal.getAllAccounts()[0];
  if (!account) {
    $('signed-out').hidden = false;
    $('sign-in').onclick = () =>
      msal.loginRedirect({ scopes: ['openid', 'profile', 'offline_access', ...scopes] }).catch(showError);
  } else {
    msal.setActiveAccount(account);
    $('me-name').textContent = account.name ?? account.username;
    $('signed-in').hidden = false;
    $('set-busy').onclick = () => setMyPresence('Busy').catch(showError);
    $('set-available').onclick = () => setMyPresence('Available').catch(showError);
    $('sign-out').onclick = () =>
      msal.logoutRedirect({ postLogoutRedirectUri: `${location.origin}/` }).catch(showError);
    await announceSession();
    await showMyPresence();
    showPeople();
  }
} catch (error) {
  showError(error);
}
