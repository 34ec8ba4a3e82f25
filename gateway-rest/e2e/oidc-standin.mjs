// A small local OpenID Connect provider for the browser e2e (test only):
// the authorization code flow with PKCE (S256 only), ID tokens signed
// RS256 with a key generated at start, and its JWKS. It stands in for
// Cognito's hosted UI: the ID token carries `custom:castle_account` as a
// string, the way Cognito shows a user pool's custom attribute.
//
//   node oidc-standin.mjs JWKS_FILE CLIENT_ID
// writes the JWKS to JWKS_FILE and prints `OIDC http://127.0.0.1:PORT`.
// GET /authorize shows a sign-in page with one button per demo user;
// POST /token trades a code (single use, 60 s) for tokens.
import { createServer } from 'node:http';
import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { writeFileSync } from 'node:fs';

const [jwksFile, clientId] = process.argv.slice(2);
if (!jwksFile || !clientId) {
  console.error('usage: node oidc-standin.mjs JWKS_FILE CLIENT_ID');
  process.exit(2);
}
const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const kid = 'standin-' + randomBytes(4).toString('hex');
const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
writeFileSync(jwksFile, JSON.stringify({ keys: [jwk] }));

const users = { 'trader-1': '1', 'trader-2': '2' };
const pending = new Map(); // transaction id -> the authorization request
const codes = new Map(); // code -> { request, user, expires }
let issuer = '';

const b64url = (b) => Buffer.from(b).toString('base64url');
function idToken(user, nonce) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid }));
  const claims = b64url(JSON.stringify({ iss: issuer, aud: clientId, sub: user, token_use: 'id', nonce,
    'custom:castle_account': users[user], iat: now, auth_time: now, exp: now + 600 }));
  const sig = sign('sha256', Buffer.from(`${header}.${claims}`), privateKey);
  return `${header}.${claims}.${b64url(sig)}`;
}

function send(res, status, type, body, extra = {}) {
  res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store', ...extra });
  res.end(body);
}
const json = (res, status, v) => send(res, status, 'application/json', JSON.stringify(v), { 'Access-Control-Allow-Origin': '*' });
const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const server = createServer((req, res) => {
  const u = new URL(req.url, issuer);
  if (req.method === 'GET' && u.pathname === '/jwks.json') return json(res, 200, { keys: [jwk] });
  if (req.method === 'GET' && u.pathname === '/authorize') {
    const q = Object.fromEntries(u.searchParams);
    if (q.client_id !== clientId || q.response_type !== 'code' || !q.redirect_uri || q.code_challenge_method !== 'S256'
      || !/^[A-Za-z0-9_-]{43}$/.test(q.code_challenge || '') || !(q.scope || '').split(' ').includes('openid')) {
      return send(res, 400, 'text/plain', 'bad authorization request');
    }
    const txn = randomBytes(16).toString('hex');
    pending.set(txn, q);
    const buttons = Object.keys(users).map((user) =>
      `<form method="post" action="/approve"><input type="hidden" name="txn" value="${txn}">` +
      `<input type="hidden" name="user" value="${user}"><button id="as-${user}">Sign in as ${user}</button></form>`).join('');
    return send(res, 200, 'text/html', `<!doctype html><title>Stand-in IdP</title><h1>Stand-in IdP</h1>${buttons}`);
  }
  let body = '';
  req.on('data', (c) => { body += c; if (body.length > 16384) req.destroy(); });
  req.on('end', () => {
    const f = new URLSearchParams(body);
    if (req.method === 'POST' && u.pathname === '/approve') {
      const q = pending.get(f.get('txn'));
      pending.delete(f.get('txn'));
      if (!q || !users[f.get('user')]) return send(res, 400, 'text/plain', 'unknown sign-in');
      const code = randomBytes(24).toString('base64url');
      codes.set(code, { q, user: f.get('user'), expires: Date.now() + 60_000 });
      const back = new URL(q.redirect_uri);
      back.searchParams.set('code', code);
      if (q.state) back.searchParams.set('state', q.state);
      return send(res, 302, 'text/plain', '', { Location: back.toString() });
    }
    if (req.method === 'POST' && u.pathname === '/token') {
      const c = codes.get(f.get('code'));
      codes.delete(f.get('code'));
      const fail = (error) => json(res, 400, { error });
      if (f.get('grant_type') !== 'authorization_code') return fail('unsupported_grant_type');
      if (!c || c.expires < Date.now()) return fail('invalid_grant');
      if (f.get('client_id') !== clientId || f.get('redirect_uri') !== c.q.redirect_uri) return fail('invalid_grant');
      const verifier = f.get('code_verifier') || '';
      if (b64url(createHash('sha256').update(verifier).digest()) !== c.q.code_challenge) return fail('invalid_grant');
      return json(res, 200, { id_token: idToken(c.user, c.q.nonce), access_token: b64url(randomBytes(24)),
        token_type: 'Bearer', expires_in: 600 });
    }
    if (req.method === 'OPTIONS') {
      return send(res, 204, 'text/plain', '', { 'Access-Control-Allow-Origin': '*',
        'Access-Control-Allow-Methods': 'POST', 'Access-Control-Allow-Headers': 'Content-Type' });
    }
    send(res, 404, 'text/plain', `no ${escape(u.pathname)}`);
  });
});
server.listen(0, '127.0.0.1', () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  console.log(`OIDC ${issuer}`);
});
