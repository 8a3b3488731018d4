// The presence board, served by presenced at `/`. Plain JavaScript, no build
// step, nothing loaded from elsewhere (the page's Content-Security-Policy
// allows its own origin only).
//
// Sign-in: authorization code with PKCE (S256) through presenced's identity
// provider, as the built-in board client, redirecting back to this page's own
// origin (response_mode=fragment keeps the code out of every request line).
// Tokens live in sessionStorage (this tab only) and are refreshed before they
// expire. Then: the tenant's people (GET /users, paged), their presence
// (getPresencesByUserId in chunks of 650), live changes from the live stream
// (GET /presences/stream, read with fetch so the token travels in the
// Authorization header; polling every 10 s when the server has it off), and
// the signed-in user's own status and status message.
'use strict';

(() => {
  const BOARD_CLIENT_ID = '5e1fb0a4-d000-4000-8000-000000000001';
  const SCOPES = 'openid profile offline_access User.ReadBasic.All Presence.Read.All Presence.ReadWrite';
  const SESSION_KEY = 'presenced.board.session';
  const PENDING_KEY = 'presenced.board.pending';
  const CHUNK = 650;
  const POLL_MS = 10_000;
  // Streams at once: over HTTP/1.1 a browser opens at most six connections
  // to an origin, and the page's other calls need some. More people than
  // MAX_STREAMS × 650 are polled instead.
  const MAX_STREAMS = 4;
  const REDIRECT_URI = `${location.origin}/`;

  const $ = (id) => document.getElementById(id);

  // --- Words and badges ---------------------------------------------------

  const AVAILABILITY = {
    Available: 'Available',
    AvailableIdle: 'Available',
    Away: 'Away',
    BeRightBack: 'Be right back',
    Busy: 'Busy',
    BusyIdle: 'Busy',
    DoNotDisturb: 'Do not disturb',
    Offline: 'Offline',
    PresenceUnknown: 'Status unknown',
  };
  const ACTIVITY = {
    Available: 'Available',
    AvailableIdle: 'Available',
    Away: 'Away',
    BeRightBack: 'Be right back',
    Busy: 'Busy',
    BusyIdle: 'Busy',
    DoNotDisturb: 'Do not disturb',
    InACall: 'In a call',
    InAConferenceCall: 'In a conference call',
    InAMeeting: 'In a meeting',
    Inactive: 'Away',
    Offline: 'Offline',
    OffWork: 'Off work',
    OutOfOffice: 'Out of office',
    PresenceUnknown: 'Status unknown',
    Presenting: 'Presenting',
    UrgentInterruptionsOnly: 'Urgent interruptions only',
  };
  const WORK_LOCATION = {
    office: 'In the office',
    remote: 'Working remotely',
    timeOff: 'Time off',
  };

  const words = (table, value) =>
    table[value] ?? String(value ?? '').replace(/([a-z])([A-Z])/g, '$1 $2') ?? '';

  // The badge's kind: Teams' colours and icons.
  function badgeKind(presence) {
    const availability = presence.availability;
    const oof = presence.outOfOfficeSettings?.isOutOfOffice === true;
    if (availability === 'DoNotDisturb') return 'dnd';
    if (availability === 'Busy' || availability === 'BusyIdle') return 'busy';
    if (oof || presence.activity === 'OutOfOffice') return 'oof';
    if (availability === 'Available' || availability === 'AvailableIdle') return 'available';
    if (availability === 'Away' || availability === 'BeRightBack') return 'away';
    if (availability === 'Offline') return 'offline';
    return 'unknown';
  }

  // What the badge says: the activity's words, or the availability's when
  // the activity repeats it.
  function presenceWords(presence) {
    if (!presence.availability) return 'Status unknown';
    const activity = words(ACTIVITY, presence.activity);
    return activity || words(AVAILABILITY, presence.availability);
  }

  function badge(presence) {
    const kind = badgeKind(presence);
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('class', 'badge');
    svg.setAttribute('viewBox', '0 0 16 16');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    const use = document.createElementNS('http://www.w3.org/2000/svg', 'use');
    use.setAttribute('href', `#i-${kind}`);
    svg.append(use);
    return { svg, kind };
  }

  // --- SHA-256 and PKCE -----------------------------------------------------

  // crypto.subtle exists only in secure contexts (https, localhost,
  // 127.0.0.1); a board reached over plain http elsewhere hashes here.
  const K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ]);

  function sha256Fallback(bytes) {
    const length = bytes.length;
    const padded = new Uint8Array(((length + 9 + 63) >> 6) << 6);
    padded.set(bytes);
    padded[length] = 0x80;
    const view = new DataView(padded.buffer);
    view.setUint32(padded.length - 8, Math.floor(length / 0x20000000));
    view.setUint32(padded.length - 4, (length << 3) >>> 0);
    const h = new Uint32Array([
      0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ]);
    const w = new Uint32Array(64);
    const rotr = (x, n) => (x >>> n) | (x << (32 - n));
    for (let offset = 0; offset < padded.length; offset += 64) {
      for (let i = 0; i < 16; i++) w[i] = view.getUint32(offset + i * 4);
      for (let i = 16; i < 64; i++) {
        const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
        const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
      }
      let [a, b, c, d, e, f, g, hh] = h;
      for (let i = 0; i < 64; i++) {
        const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
        const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
        hh = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
      }
      h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
    }
    const out = new Uint8Array(32);
    const outView = new DataView(out.buffer);
    h.forEach((value, i) => outView.setUint32(i * 4, value));
    return out;
  }

  async function sha256(text) {
    const bytes = new TextEncoder().encode(text);
    if (window.isSecureContext && window.crypto?.subtle) {
      return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    }
    return sha256Fallback(bytes);
  }

  const base64url = (bytes) =>
    btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

  const randomText = (size) => base64url(crypto.getRandomValues(new Uint8Array(size)));

  // The page's own check of the fallback, for tests and the curious.
  window.presencedBoard = {
    sha256Hex: (text) =>
      Array.from(sha256Fallback(new TextEncoder().encode(text)), (b) => b.toString(16).padStart(2, '0')).join(''),
    secureContext: () => window.isSecureContext && Boolean(window.crypto?.subtle),
  };

  // --- Session --------------------------------------------------------------

  let session = null; // {tenant, user, name, accessToken, refreshToken, expiresAt}
  let refreshTimer = 0;
  let refreshing = null;

  function claims(jwt) {
    try {
      const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const text = new TextDecoder().decode(Uint8Array.from(atob(part), (c) => c.charCodeAt(0)));
      return JSON.parse(text);
    } catch {
      return {};
    }
  }

  function loadSession() {
    try {
      return JSON.parse(sessionStorage.getItem(SESSION_KEY) ?? 'null');
    } catch {
      return null;
    }
  }

  function saveSession(tokens, tenantHint) {
    const access = claims(tokens.access_token);
    const id = tokens.id_token ? claims(tokens.id_token) : {};
    session = {
      tenant: access.tid ?? tenantHint,
      user: access.oid ?? id.oid,
      name: id.name ?? access.name ?? id.preferred_username ?? access.upn ?? '',
      accessToken: tokens.access_token,
      refreshToken: tokens.refresh_token ?? session?.refreshToken ?? null,
      expiresAt: Date.now() + Number(tokens.expires_in ?? 3600) * 1000,
    };
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
    scheduleRefresh();
  }

  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    if (!session?.refreshToken) return;
    // Five minutes before expiry (at least 5 s from now).
    const due = Math.max(5_000, session.expiresAt - Date.now() - 5 * 60_000);
    refreshTimer = setTimeout(() => refresh().catch(showError), Math.min(due, 2 ** 31 - 1));
  }

  async function tokenRequest(tenant, form) {
    const response = await fetch(`/${encodeURIComponent(tenant)}/oauth2/v2.0/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ client_id: BOARD_CLIENT_ID, ...form }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(body.error_description ?? `The sign-in failed (${response.status}).`);
      error.oauth = body.error;
      throw error;
    }
    return body;
  }

  // One refresh at a time; a failed one signs out.
  function refresh() {
    if (!refreshing) {
      refreshing = (async () => {
        if (!session?.refreshToken) throw new Error('Your sign-in has expired. Sign in again.');
        try {
          const tokens = await tokenRequest(session.tenant, {
            grant_type: 'refresh_token',
            refresh_token: session.refreshToken,
            scope: SCOPES,
          });
          saveSession(tokens, session.tenant);
        } catch (error) {
          if (error.oauth) {
            forget();
            showSignedOut();
            throw new Error(`Your sign-in has ended: ${error.message}`);
          }
          throw error;
        }
      })().finally(() => {
        refreshing = null;
      });
    }
    return refreshing;
  }

  function forget() {
    clearTimeout(refreshTimer);
    stopLive();
    session = null;
    sessionStorage.removeItem(SESSION_KEY);
  }

  async function signIn(tenant) {
    const verifier = randomText(32);
    const challenge = base64url(await sha256(verifier));
    const state = randomText(16);
    sessionStorage.setItem(PENDING_KEY, JSON.stringify({ verifier, state, tenant }));
    const query = new URLSearchParams({
      client_id: BOARD_CLIENT_ID,
      response_type: 'code',
      response_mode: 'fragment',
      redirect_uri: REDIRECT_URI,
      scope: SCOPES,
      state,
      code_challenge: challenge,
      code_challenge_method: 'S256',
    });
    location.assign(`/${encodeURIComponent(tenant || 'organizations')}/oauth2/v2.0/authorize?${query}`);
  }

  // The answer of the authorization endpoint, in the fragment.
  async function completeSignIn() {
    const fragment = new URLSearchParams(location.hash.slice(1));
    if (!fragment.has('code') && !fragment.has('error')) return false;
    history.replaceState(null, '', location.pathname + location.search);
    const pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) ?? 'null');
    sessionStorage.removeItem(PENDING_KEY);
    if (!pending || fragment.get('state') !== pending.state) {
      throw new Error('The sign-in answer does not belong to this page. Sign in again.');
    }
    if (fragment.has('error')) {
      throw new Error(`The sign-in failed: ${fragment.get('error_description') ?? fragment.get('error')}`);
    }
    const tokens = await tokenRequest(pending.tenant || 'organizations', {
      grant_type: 'authorization_code',
      code: fragment.get('code'),
      redirect_uri: REDIRECT_URI,
      code_verifier: pending.verifier,
    });
    saveSession(tokens, pending.tenant);
    return true;
  }

  function signOut() {
    const tenant = session?.tenant ?? 'organizations';
    forget();
    const query = new URLSearchParams({ client_id: BOARD_CLIENT_ID, post_logout_redirect_uri: REDIRECT_URI });
    location.assign(`/${encodeURIComponent(tenant)}/oauth2/v2.0/logout?${query}`);
  }

  // --- The API --------------------------------------------------------------

  // A Graph error's words: its message and code.
  async function failure(response) {
    let message = `${response.status} ${response.statusText}`.trim();
    try {
      const body = await response.json();
      if (body?.error?.message) message = `${body.error.message} (${body.error.code})`;
    } catch {
      // not JSON
    }
    const error = new Error(message);
    error.status = response.status;
    return error;
  }

  // A Graph call with the session's token; one refresh and retry on 401.
  async function graph(method, path, body, { signal, raw } = {}) {
    for (let attempt = 0; ; attempt++) {
      if (!session) throw new Error('You are signed out.');
      if (session.expiresAt - Date.now() < 30_000 && session.refreshToken) await refresh();
      const response = await fetch(path, {
        method,
        signal,
        headers: {
          authorization: `Bearer ${session.accessToken}`,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        body: body !== undefined ? JSON.stringify(body) : undefined,
      });
      if (response.status === 401 && attempt === 0 && session?.refreshToken) {
        await refresh();
        continue;
      }
      if (raw) return response;
      if (!response.ok) throw await failure(response);
      const text = await response.text();
      return text ? JSON.parse(text) : null;
    }
  }

  // `@odata.nextLink` names the server's listener; the page follows it on
  // its own origin.
  const sameOrigin = (link) => {
    const url = new URL(link, location.origin);
    return url.pathname + url.search;
  };

  async function loadPeople() {
    const people = [];
    let path = '/v1.0/users?$select=id,displayName,userPrincipalName,mail&$top=999';
    for (let page = 0; path && page < 1000; page++) {
      const body = await graph('GET', path);
      people.push(...(body.value ?? []));
      path = body['@odata.nextLink'] ? sameOrigin(body['@odata.nextLink']) : null;
    }
    return people;
  }

  async function loadPresences(ids) {
    const found = [];
    for (let i = 0; i < ids.length; i += CHUNK) {
      const body = await graph('POST', '/v1.0/communications/getPresencesByUserId', { ids: ids.slice(i, i + CHUNK) });
      found.push(...(body.value ?? []));
    }
    return found;
  }

  // --- The grid -------------------------------------------------------------

  const cards = new Map(); // id -> {person, presence, element}

  const initials = (name) =>
    (name || '?')
      .split(/\s+/)
      .filter(Boolean)
      .slice(0, 2)
      .map((w) => w[0].toUpperCase())
      .join('');

  function text(tag, className, content) {
    const element = document.createElement(tag);
    if (className) element.className = className;
    element.textContent = content;
    return element;
  }

  function render(entry) {
    const { person, presence } = entry;
    const { svg, kind } = badge(presence);
    const card = entry.element ?? document.createElement('li');
    card.className = `card a-${kind}${person.id === session?.user ? ' me' : ''}`;
    card.dataset.id = person.id;
    card.dataset.availability = presence.availability ?? '';
    card.dataset.activity = presence.activity ?? '';
    const said = presenceWords(presence);
    const avatar = text('div', 'avatar', initials(person.displayName));
    avatar.setAttribute('aria-hidden', 'true');
    svg.setAttribute('data-kind', kind);
    avatar.append(svg);
    const who = document.createElement('div');
    who.className = 'who';
    who.append(text('h3', 'name', person.displayName || person.userPrincipalName || person.id));
    const upn = person.userPrincipalName || person.mail;
    if (upn) who.append(text('p', 'upn', upn));
    const activity = text('p', 'activity', said);
    activity.title = `${words(AVAILABILITY, presence.availability)} · ${said}`;
    who.append(activity);
    const message = presence.statusMessage?.message?.content;
    if (message) {
      const line = text('p', 'status-message', message);
      const until = presence.statusMessage?.expiryDateTime?.dateTime;
      if (until) line.title = `Until ${formatGraphTime(presence.statusMessage.expiryDateTime)}`;
      who.append(line);
    }
    if (presence.outOfOfficeSettings?.isOutOfOffice) {
      const note = presence.outOfOfficeSettings.message;
      who.append(text('p', 'oof', note ? `Out of office: ${note}` : 'Out of office'));
    }
    const where = presence.workLocation?.workLocationType;
    if (where && WORK_LOCATION[where]) who.append(text('p', 'location', WORK_LOCATION[where]));
    card.replaceChildren(avatar, who);
    entry.element = card;
    return card;
  }

  function formatGraphTime(value) {
    const zone = value.timeZone === 'UTC' || !value.timeZone ? 'Z' : '';
    const date = new Date(`${value.dateTime.replace(/\.\d+$/, '')}${zone}`);
    return Number.isNaN(date.getTime()) ? value.dateTime : date.toLocaleString();
  }

  function matches(person, query) {
    if (!query) return true;
    return [person.displayName, person.userPrincipalName, person.mail].some((v) =>
      (v ?? '').toLowerCase().includes(query),
    );
  }

  function applySearch() {
    const query = $('search').value.trim().toLowerCase();
    let shown = 0;
    for (const entry of cards.values()) {
      const visible = matches(entry.person, query);
      entry.element.hidden = !visible;
      if (visible) shown++;
    }
    $('count').textContent = query ? `${shown} of ${cards.size} people` : `${cards.size} people`;
  }

  function renderMine() {
    const entry = cards.get(session?.user);
    const line = $('my-presence');
    if (!entry) {
      line.textContent = 'You are not in the directory of this tenant.';
      return;
    }
    const { svg, kind } = badge(entry.presence);
    line.className = `me-line a-${kind}`;
    line.replaceChildren(svg, text('span', 'activity', presenceWords(entry.presence)));
    const message = entry.presence.statusMessage?.message?.content;
    if (message) line.append(text('span', 'status-message', `“${message}”`));
  }

  function update(presence, announce) {
    const entry = cards.get(presence.id);
    if (!entry) return;
    const before = presenceWords(entry.presence);
    entry.presence = { ...entry.presence, ...presence };
    render(entry);
    if (presence.id === session?.user) renderMine();
    const after = presenceWords(entry.presence);
    if (announce && before !== after) {
      entry.element.classList.remove('changed');
      void entry.element.offsetWidth;
      entry.element.classList.add('changed');
      $('announce').textContent = `${entry.person.displayName} is now ${after}.`;
    }
  }

  async function loadBoard() {
    const people = await loadPeople();
    people.sort((a, b) => (a.displayName ?? '').localeCompare(b.displayName ?? ''));
    const presences = new Map((await loadPresences(people.map((p) => p.id))).map((p) => [p.id, p]));
    cards.clear();
    const list = $('people');
    list.replaceChildren(
      ...people.map((person) => {
        const entry = { person, presence: presences.get(person.id) ?? { id: person.id } };
        cards.set(person.id, entry);
        return render(entry);
      }),
    );
    if (people.length === 0) list.append(text('li', 'empty', 'Nobody is in this directory yet.'));
    applySearch();
    renderMine();
  }

  // Presence read afresh for some users (after a live event: the stream
  // carries availability and activity, not the status message).
  let stale = new Set();
  let staleTimer = 0;
  function refreshSoon(id) {
    stale.add(id);
    clearTimeout(staleTimer);
    staleTimer = setTimeout(async () => {
      const ids = [...stale];
      stale = new Set();
      try {
        for (const presence of await loadPresences(ids)) update(presence, false);
      } catch (error) {
        showError(error);
      }
    }, 150);
  }

  // --- Live updates ---------------------------------------------------------

  let live = null; // AbortController of the open streams
  let pollTimer = 0;

  function stopLive() {
    live?.abort();
    live = null;
    clearInterval(pollTimer);
    pollTimer = 0;
  }

  function startLive() {
    stopLive();
    live = new AbortController();
    const ids = [...cards.keys()];
    if (ids.length === 0) return;
    if (ids.length > MAX_STREAMS * CHUNK) {
      poll();
      return;
    }
    $('live').textContent = 'Live updates: connecting…';
    for (let i = 0; i < ids.length; i += CHUNK) follow(ids.slice(i, i + CHUNK), live.signal);
  }

  function poll() {
    if (pollTimer) return;
    $('live').textContent = `Refreshed every ${POLL_MS / 1000} s (no live updates).`;
    pollTimer = setInterval(async () => {
      try {
        for (const presence of await loadPresences([...cards.keys()])) update(presence, true);
      } catch (error) {
        showError(error);
      }
    }, POLL_MS);
  }

  // One stream of Server-Sent Events, reconnecting with Last-Event-ID.
  async function follow(ids, signal) {
    let lastId = null;
    let delay = 1_000;
    while (!signal.aborted) {
      try {
        const response = await graph('GET', `/v1.0/presences/stream?ids=${ids.join(',')}`, undefined, {
          signal,
          raw: true,
        });
        if (response.status === 404) {
          poll();
          return;
        }
        if (!response.ok) throw await failure(response);
        $('live').textContent = 'Live updates: on';
        delay = 1_000;
        lastId = await readEvents(response.body, lastId);
        // The stream ended: read everything afresh before following again.
        for (const presence of await loadPresences(ids)) update(presence, false);
      } catch (error) {
        if (signal.aborted) return;
        if (error.status && error.status < 500 && error.status !== 429) {
          showError(error);
          return;
        }
        $('live').textContent = 'Live updates: reconnecting…';
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 30_000);
    }
  }

  async function readEvents(body, lastId) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return lastId;
      buffer += value.replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = 'message';
        let data = '';
        for (const line of block.split('\n')) {
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const content = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'event') event = content;
          else if (field === 'data') data += (data ? '\n' : '') + content;
          else if (field === 'id') lastId = content;
        }
        if (event === 'presence' && data) {
          const change = JSON.parse(data);
          update({ id: change.id, availability: change.availability, activity: change.activity }, true);
          refreshSoon(change.id);
        } else if (event === 'missed') {
          for (const presence of await loadPresences([...cards.keys()])) update(presence, false);
        }
      }
    }
  }

  // --- The signed-in user's controls ----------------------------------------

  // Minutes left until local midnight, as an ISO 8601 duration.
  function untilMidnight() {
    const now = new Date();
    const midnight = new Date(now);
    midnight.setHours(24, 0, 0, 0);
    const minutes = Math.max(1, Math.round((midnight - now) / 60_000));
    return `PT${Math.floor(minutes / 60)}H${minutes % 60}M`;
  }

  function toUtcDateTime(date) {
    return date.toISOString().replace('Z', '');
  }

  async function act(label, work) {
    const result = $('mine-result');
    const buttons = document.querySelectorAll('#mine button');
    buttons.forEach((b) => (b.disabled = true));
    result.textContent = `${label}…`;
    try {
      await work();
      const presence = await graph('GET', '/v1.0/me/presence');
      update(presence, false);
      result.textContent = `${label}: done.`;
      clearError();
    } catch (error) {
      result.textContent = '';
      showError(new Error(`${label} failed: ${error.message}`));
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  }

  function setPreferred(event) {
    event.preventDefault();
    const [availability, activity] = $('preferred').value.split('/');
    let duration = $('duration').value;
    if (duration === 'today') duration = untilMidnight();
    if (duration === 'custom') duration = $('custom-duration').value.trim();
    act('Setting your status', () =>
      graph('POST', '/v1.0/me/presence/setUserPreferredPresence', {
        availability,
        activity,
        ...(duration ? { expirationDuration: duration } : {}),
      }),
    );
  }

  function clearPreferred() {
    act('Resetting your status', () => graph('POST', '/v1.0/me/presence/clearUserPreferredPresence', {}));
  }

  function setMessage(event) {
    event.preventDefault();
    const content = $('message').value;
    const choice = $('message-expiry').value;
    let expiry = null;
    if (choice === 'today') {
      const midnight = new Date();
      midnight.setHours(24, 0, 0, 0);
      expiry = midnight;
    } else if (choice === 'custom') {
      expiry = new Date($('message-until').value);
      if (Number.isNaN(expiry.getTime())) {
        showError(new Error('Saving your message failed: choose the date and time it clears at.'));
        return;
      }
    } else if (choice !== 'never') {
      expiry = new Date(Date.now() + (choice === 'PT1H' ? 1 : 4) * 3_600_000);
    }
    const statusMessage = { message: { content, contentType: 'text' } };
    if (expiry) statusMessage.expiryDateTime = { dateTime: toUtcDateTime(expiry), timeZone: 'UTC' };
    act('Saving your message', () => graph('POST', '/v1.0/me/presence/setStatusMessage', { statusMessage }));
  }

  function clearMessage() {
    $('message').value = '';
    act('Clearing your message', () =>
      graph('POST', '/v1.0/me/presence/setStatusMessage', {
        statusMessage: { message: { content: '', contentType: 'text' } },
      }),
    );
  }

  // --- The page ---------------------------------------------------------------

  function showError(error) {
    $('error').textContent = error?.message ?? String(error);
  }

  function clearError() {
    $('error').textContent = '';
  }

  function showSignedOut() {
    $('signed-in').hidden = true;
    $('account').hidden = true;
    $('signed-out').hidden = false;
    const tenant = new URLSearchParams(location.search).get('tenant');
    if (tenant && !$('tenant').value) $('tenant').value = tenant;
  }

  async function showSignedIn() {
    $('signed-out').hidden = true;
    $('account').hidden = false;
    $('me-name').textContent = session.name || session.user;
    $('signed-in').hidden = false;
    await loadBoard();
    startLive();
  }

  function wire() {
    $('sign-in-form').addEventListener('submit', (event) => {
      event.preventDefault();
      signIn($('tenant').value.trim()).catch(showError);
    });
    $('sign-out').addEventListener('click', signOut);
    $('search').addEventListener('input', applySearch);
    $('preferred-form').addEventListener('submit', setPreferred);
    $('clear-preferred').addEventListener('click', clearPreferred);
    $('message-form').addEventListener('submit', setMessage);
    $('clear-message').addEventListener('click', clearMessage);
    $('duration').addEventListener('change', () => {
      $('custom-duration-row').hidden = $('duration').value !== 'custom';
    });
    $('message-expiry').addEventListener('change', () => {
      $('message-until-row').hidden = $('message-expiry').value !== 'custom';
    });
  }

  async function start() {
    wire();
    try {
      const signedInNow = await completeSignIn();
      if (!signedInNow) session = loadSession();
      else scheduleRefresh();
      if (session && !signedInNow) {
        if (session.expiresAt - Date.now() < 60_000) await refresh();
        else scheduleRefresh();
      }
    } catch (error) {
      forget();
      showError(error);
    }
    if (!session) {
      showSignedOut();
      return;
    }
    try {
      await showSignedIn();
    } catch (error) {
      showError(error);
    }
  }

  start();
})();
