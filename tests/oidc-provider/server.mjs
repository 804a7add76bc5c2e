// A local OpenID provider (node-oidc-provider) for the upstream-login tests and the demo.
//
// Environment: PORT (required), ISSUER (default http://localhost:$PORT), CLIENT_ID,
// CLIENT_SECRET and REDIRECT_URIS (comma-separated) of the client the authorization server
// uses; optionally OTHER_CLIENT_ID, OTHER_CLIENT_SECRET for a second client, and
// PKJWT_CLIENT_ID with PKJWT_PUBLIC_KEY_FILE (a PEM public key) for a client that authenticates
// with private_key_jwt.
//
// People (username / password): demo / demo in groups mcp-users and mcp-admins, outsider /
// outsider in mcp-users only, stranger / stranger at another email domain. The login page is a
// plain HTML form (username, password) that a test can fill in over HTTP; consent is implied for
// every client (they are all first-party here).

import { createServer } from 'node:http';
import { createPublicKey, generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
if (!port) {
  console.error('PORT is required');
  process.exit(2);
}
const issuer = process.env.ISSUER || `http://localhost:${port}`;

const people = {
  demo: {
    password: 'demo',
    claims: {
      email: 'demo@example.com', email_verified: true, name: 'Demo Person',
      groups: ['mcp-users', 'mcp-admins'],
    },
  },
  outsider: {
    password: 'outsider',
    claims: {
      email: 'outsider@example.com', email_verified: true, name: 'Outside Person',
      groups: ['mcp-users'],
    },
  },
  stranger: {
    password: 'stranger',
    claims: {
      email: 'stranger@elsewhere.test', email_verified: true, name: 'Strange Person',
      groups: ['mcp-users'],
    },
  },
};

function client(id, secret) {
  return {
    client_id: id,
    client_secret: secret,
    redirect_uris: (process.env.REDIRECT_URIS || '').split(',').filter(Boolean),
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  };
}

const clients = [client(process.env.CLIENT_ID || 'mcp-auth-server', process.env.CLIENT_SECRET || 'secret')];
if (process.env.OTHER_CLIENT_ID) {
  clients.push(client(process.env.OTHER_CLIENT_ID, process.env.OTHER_CLIENT_SECRET || 'secret'));
}
if (process.env.PKJWT_CLIENT_ID) {
  const jwk = createPublicKey(readFileSync(process.env.PKJWT_PUBLIC_KEY_FILE)).export({ format: 'jwk' });
  const { client_secret: _, ...rest } = client(process.env.PKJWT_CLIENT_ID, undefined);
  clients.push({
    ...rest,
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: jwk.kty === 'EC' ? 'ES256' : 'RS256',
    jwks: { keys: [jwk] },
  });
}

// A fresh signing key per start: nothing outlives the process.
const signingKey = {
  ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  kid: randomUUID(),
  alg: 'RS256',
  use: 'sig',
};

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomUUID()] },
  // Scope claims go into the ID token itself (the relying party reads no userinfo).
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups'],
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const person = people[id];
    if (!person) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...person.claims }) };
  },
  // Every client is first-party: the grant covers what it asks for.
  async loadExistingGrant(ctx) {
    const existing = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (existing) return ctx.oidc.provider.Grant.find(existing);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope(ctx.oidc.params.scope || 'openid');
    await grant.save();
    return grant;
  },
});

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(res, status, uid, notice) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Test IdP sign-in</title></head>
<body><h1>Test identity provider</h1>${notice ? `<p>${escape(notice)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<label>Username <input name="username" autocomplete="username"></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button></form>
<form method="post" action="/interaction/${escape(uid)}/abort"><button type="submit">Cancel</button></form>
</body></html>`);
}

async function body(req) {
  let text = '';
  for await (const chunk of req) text += chunk;
  return new URLSearchParams(text);
}

async function interaction(req, res, path) {
  const [uid, action] = path.split('/');
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    res.statusCode = 400;
    res.end('unknown interaction');
    return;
  }
  if (req.method === 'GET') {
    page(res, 200, uid);
    return;
  }
  if (action === 'abort') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'the person cancelled the sign-in',
    }, { mergeWithLastSubmission: false });
    return;
  }
  const form = await body(req);
  const username = form.get('username');
  const person = people[username];
  if (!person || person.password !== form.get('password')) {
    page(res, 401, uid, 'Wrong username or password.');
    return;
  }
  await provider.interactionFinished(req, res, { login: { accountId: username } },
    { mergeWithLastSubmission: false });
}

const callback = provider.callback();
createServer((req, res) => {
  const url = new URL(req.url, issuer);
  if (url.pathname.startsWith('/interaction/')) {
    interaction(req, res, url.pathname.slice('/interaction/'.length)).catch((err) => {
      console.error(err);
      res.statusCode = 500;
      res.end('interaction failed');
    });
    return;
  }
  callback(req, res);
}).listen(port, '127.0.0.1', () => {
  console.log(`OpenID provider ${issuer} listening on 127.0.0.1:${port}`);
});
