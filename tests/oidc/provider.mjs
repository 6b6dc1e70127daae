// A real OpenID Provider for the OpenID Connect logout tests: node-oidc-provider 9
// (certified), configured for loopback test apps. Started by tests/oidc_provider.py.
//
//   OIDC_PORT=9000 OIDC_CLIENTS='[{"client_id": "app", ...}]' node tests/oidc/provider.mjs
//
// * issuer http://127.0.0.1:<OIDC_PORT>, listening on 127.0.0.1 only;
// * clients from OIDC_CLIENTS, a JSON list of client metadata (client_id, client_secret,
//   redirect_uris, post_logout_redirect_uris, backchannel_logout_uri,
//   backchannel_logout_session_required: true, ...);
// * devInteractions: login and consent pages that accept any login name (and any
//   password); the login name becomes the account's `sub`;
// * backchannelLogout and rpInitiatedLogout (end_session_endpoint /session/end);
// * a fresh RS256 signing key and fresh cookie keys at every start (nothing persisted:
//   sessions and grants live in the provider's memory).
//
// Prints `READY <issuer>` on stdout once listening; everything else goes to stderr.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const port = Number.parseInt(process.env.OIDC_PORT ?? '', 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('OIDC_PORT must be a TCP port number');
  process.exit(2);
}
const clients = JSON.parse(process.env.OIDC_CLIENTS ?? '[]');
const issuer = `http://127.0.0.1:${port}`;

// One RSA key for RS256 (ID tokens and logout tokens), made now, never written anywhere.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }),
  kid: randomBytes(8).toString('hex'),
  alg: 'RS256',
  use: 'sig',
};

// Version 9 refuses outgoing requests to special-use addresses (its SSRF guard is the
// `dispatcher` it puts in `options`), loopback included, and the back-channel delivery
// then fails quietly. The test apps are all on loopback: let requests to loopback IP
// literals (and localhost) through without the guard, and refuse every other target.
function isLoopback(hostname) {
  const host = hostname.replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127(\.\d{1,3}){3}$/.test(host);
}

async function loopbackOnlyFetch(url, options) {
  const target = new URL(url);
  if (!isLoopback(target.hostname)) {
    throw new Error(`test provider: refusing an outgoing request to ${target.origin}`);
  }
  const { dispatcher, ...rest } = options; // drop the guard for loopback only
  return globalThis.fetch(url, rest);
}

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  // The account is whoever typed that login name; its only claim is `sub`.
  findAccount: (ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
  claims: { openid: ['sub'] },
  features: {
    devInteractions: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  fetch: loopbackOnlyFetch,
});

// Make back-channel outcomes visible in the provider's output (stderr).
provider.on('backchannel.success', (ctx, client, accountId, sid) => {
  console.error(`backchannel.success client=${client.clientId} sub=${accountId} sid=${sid}`);
});
provider.on('backchannel.error', (ctx, err, client, accountId, sid) => {
  console.error(
    `backchannel.error client=${client.clientId} sub=${accountId} sid=${sid}: ${err}`,
  );
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));

const server = createServer(provider.callback());
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`READY ${issuer}\n`);
});

// Stop promptly on SIGTERM / SIGINT (tests/oidc_provider.py sends SIGTERM).
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
