// Castle Trade: a small trading page on the public REST/WebSocket API.
// Prices and sizes stay decimal strings end to end (BigInt for totals);
// floats are used only to size depth bars and draw the chart.
'use strict';

const $ = (id) => document.getElementById(id);
const state = {
  symbols: {}, symbol: null, key: null, secret: null, token: null, account: null, oidc: null,
  book: { seq: null, applied: 0, bids: new Map(), asks: new Map(), buffer: [] },
  trades: [], candles: [], orders: new Map(), fills: [], balances: new Map(),
  side: 'BUY', type: 'LIMIT', ws: null, lastTs: 0,
};

// ---------- exact decimals
function places(step) { const f = step.split('.')[1]; return f ? f.replace(/0+$/, '').length || 0 : 0; }
function fmt(s, p) {
  if (s == null || s === '') return '\u2013';
  let [i, f = ''] = String(s).split('.');
  if (f.length > p) f = f.replace(/0+$/, ''); // never drop a significant digit, only padding
  if (p === 0 && !f) return i;
  if (f.length < p) f = f + '0'.repeat(p - f.length);
  return i + '.' + f;
}
function toBig(s, p) { let [i, f = ''] = s.split('.'); f = (f + '0'.repeat(p)).slice(0, p); return BigInt(i + f); }
function fromBig(b, p) {
  const neg = b < 0n; let s = (neg ? -b : b).toString().padStart(p + 1, '0');
  const out = p ? s.slice(0, -p) + '.' + s.slice(-p) : s;
  return (neg ? '-' : '') + out;
}
function mul(a, pa, b, pb) { return fromBig(toBig(a, pa) * toBig(b, pb), pa + pb); }
const DEC = /^[0-9]{1,20}(\.[0-9]{1,18})?$/;

// ---------- signing (HMAC-SHA256 over timestamp + METHOD + path + ?query + body)
async function hmacHex(secret, text) {
  const enc = new TextEncoder();
  const k = await crypto.subtle.importKey('raw', enc.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const sig = await crypto.subtle.sign('HMAC', k, enc.encode(text));
  return Array.from(new Uint8Array(sig), (b) => b.toString(16).padStart(2, '0')).join('');
}
function stamp() { let t = Date.now(); if (t <= state.lastTs) t = state.lastTs + 1; state.lastTs = t; return t; }

async function api(method, path, query = '', body = null, signed = false) {
  const b = body ? JSON.stringify(body) : '';
  const url = path + (query ? '?' + query : '');
  const headers = {};
  if (b) headers['Content-Type'] = 'application/json';
  if (signed && state.token) {
    headers['Authorization'] = 'Bearer ' + state.token;
  } else if (signed) {
    const ts = stamp();
    headers['X-API-KEY'] = state.key;
    headers['X-TIMESTAMP'] = String(ts);
    headers['X-SIGNATURE'] = await hmacHex(state.secret, ts + method + path + (query ? '?' + query : '') + b);
  }
  const r = await fetch(url, { method, headers, body: b || undefined });
  const j = await r.json().catch(() => null);
  if (r.status === 401 && signed && state.token && state.account) {
    // An expired or revoked session: sign in again.
    logout(); msg('Session expired: sign in again', 'err');
  }
  if (!r.ok) throw new Error(j && j.message ? `${j.message} [${j.code}]` : `HTTP ${r.status}`);
  return j;
}

// ---------- instruments
function spec() { return state.symbols[state.symbol]; }
async function loadInstruments() {
  const info = await api('GET', '/api/v1/exchangeInfo');
  const sel = $('symbol');
  sel.innerHTML = '';
  for (const s of info.symbols) {
    s.pp = places(s.tick_size); s.qp = places(s.lot_size);
    state.symbols[s.symbol] = s;
    const o = document.createElement('option'); o.value = s.symbol; o.textContent = s.symbol; sel.appendChild(o);
  }
  const want = new URLSearchParams(location.search).get('symbol');
  selectSymbol(want && state.symbols[want] ? want : info.symbols[0].symbol);
}

function channels(sym) { return [`depth@${sym}`, `trades@${sym}`, `ticker@${sym}`, `candles@${sym}@1m`]; }

async function selectSymbol(sym) {
  const old = state.symbol;
  state.symbol = sym;
  $('symbol').value = sym;
  $('base-unit').textContent = spec().base_asset;
  $('quote-unit').textContent = spec().quote_asset;
  if (state.ws && state.ws.readyState === 1) {
    if (old) wsSend({ op: 'unsubscribe', channels: channels(old) });
    wsSend({ op: 'subscribe', channels: channels(sym) });
  }
  state.trades = []; state.candles = [];
  await Promise.all([resyncBook(), loadTrades(), loadCandles(), loadTicker()]);
  renderTicket();
}

// ---------- order book: REST snapshot + WebSocket diffs chained by seq
async function resyncBook() {
  const b = state.book;
  b.seq = null; b.buffer = [];
  const snap = await api('GET', '/api/v1/depth', `symbol=${encodeURIComponent(state.symbol)}&limit=100`);
  if (snap.symbol !== state.symbol) return;
  b.bids = new Map(snap.bids.map(([p, q]) => [p, q]));
  b.asks = new Map(snap.asks.map(([p, q]) => [p, q]));
  b.seq = snap.seq; b.applied = snap.seq;
  const pending = b.buffer; b.buffer = [];
  pending.forEach(applyDiff);
  renderBook();
}
function applyDiff(m) {
  const b = state.book;
  if (m.symbol !== state.symbol) return;
  if (b.seq === null) { b.buffer.push(m); return; }
  if (m.last_seq <= b.applied) return;
  if (m.prev_seq > b.applied) { resyncBook(); return; } // a gap: start again from a snapshot
  for (const [p, q] of m.bids) { if (/^0(\.0*)?$/.test(q)) b.bids.delete(p); else b.bids.set(p, q); }
  for (const [p, q] of m.asks) { if (/^0(\.0*)?$/.test(q)) b.asks.delete(p); else b.asks.set(p, q); }
  b.applied = m.last_seq;
  renderBook();
}
function renderBook() {
  const s = spec(); if (!s) return;
  const N = 18;
  const asks = [...state.book.asks].sort((a, b) => parseFloat(a[0]) - parseFloat(b[0])).slice(0, N);
  const bids = [...state.book.bids].sort((a, b) => parseFloat(b[0]) - parseFloat(a[0])).slice(0, N);
  const mine = new Set([...state.orders.values()].filter((o) => o.symbol === state.symbol && o.price).map((o) => o.price));
  const side = (levels, el) => {
    let cum = 0n; const rows = levels.map(([p, q]) => { cum += toBig(q, s.qp); return [p, q, cum]; });
    const max = rows.length ? Number(rows[rows.length - 1][2]) : 1;
    return rows.map(([p, q, c]) => `<div class="lvl${mine.has(p) ? ' mine' : ''}" data-price="${fmt(p, s.pp)}">` +
      `<div class="bar" style="width:${(Number(c) / max * 100).toFixed(1)}%"></div>` +
      `<span>${fmt(p, s.pp)}</span><span>${fmt(q, s.qp)}</span><span>${fmt(fromBig(c, s.qp), s.qp)}</span></div>`);
  };
  $('book-asks').innerHTML = side(asks, 'asks').reverse().join('');
  $('book-bids').innerHTML = side(bids, 'bids').join('');
  const bestAsk = asks[0] && asks[0][0], bestBid = bids[0] && bids[0][0];
  $('spread').innerHTML = bestAsk && bestBid
    ? `${fmt(state.lastPrice || bestBid, s.pp)} <span class="muted" style="font-size:11px">spread ${fmt(fromBig(toBig(bestAsk, s.pp) - toBig(bestBid, s.pp), s.pp), s.pp)}</span>`
    : `<span class="muted">${state.lastPrice ? fmt(state.lastPrice, s.pp) : 'no two-sided market'}</span>`;
  $('book-seq').textContent = state.book.seq !== null ? `seq ${state.book.applied}` : '';
}

// ---------- trades, ticker, candles
const hhmmss = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });
async function loadTrades() {
  const t = await api('GET', '/api/v1/trades', `symbol=${encodeURIComponent(state.symbol)}&limit=60`);
  state.trades = t.reverse();
  if (state.trades[0]) state.lastPrice = state.trades[0].price;
  renderTrades();
}
function renderTrades() {
  const s = spec();
  $('trades').innerHTML = state.trades.slice(0, 60).map((t) =>
    `<div class="t" data-trade-id="${t.trade_id}"><span class="${t.taker_side === 'BUY' ? 'up' : 'down'}">${fmt(t.price, s.pp)}</span>` +
    `<span>${fmt(t.quantity, s.qp)}</span><span>${hhmmss(t.time)}</span></div>`).join('');
}
async function loadTicker() {
  const t = await api('GET', '/api/v1/ticker/24hr', `symbol=${encodeURIComponent(state.symbol)}`);
  renderTicker(t[0]);
}
function renderTicker(t) {
  const s = spec(); if (!t || !s || t.symbol !== state.symbol) return;
  $('st-last').textContent = t.last ? fmt(t.last, s.pp) : '\u2013';
  const ch = $('st-change');
  if (t.change != null && t.open) {
    const pct = (parseFloat(t.change) / parseFloat(t.open) * 100).toFixed(2);
    ch.textContent = `${t.change.startsWith('-') ? '' : '+'}${fmt(t.change, s.pp)} (${pct}%)`;
    ch.className = t.change.startsWith('-') ? 'down' : 'up';
  } else { ch.textContent = '\u2013'; ch.className = ''; }
  $('st-high').textContent = t.high ? fmt(t.high, s.pp) : '\u2013';
  $('st-low').textContent = t.low ? fmt(t.low, s.pp) : '\u2013';
  $('st-vol').textContent = `${fmt(t.volume, s.qp)} ${s.base_asset}`;
}
async function loadCandles() {
  state.candles = await api('GET', '/api/v1/klines', `symbol=${encodeURIComponent(state.symbol)}&interval=1m&limit=90`);
  drawChart();
}
function drawChart() {
  const c = $('chart'), dpr = window.devicePixelRatio || 1;
  const w = c.clientWidth, h = c.clientHeight;
  c.width = w * dpr; c.height = h * dpr;
  const g = c.getContext('2d'); g.scale(dpr, dpr); g.clearRect(0, 0, w, h);
  const cs = state.candles.slice(-90), axis = 70;
  g.font = '11px ui-monospace, monospace';
  if (!cs.length) { g.fillStyle = '#7c8795'; g.fillText('No trades yet on ' + state.symbol, 12, h / 2); return; }
  let hi = Math.max(...cs.map((k) => parseFloat(k.high))), lo = Math.min(...cs.map((k) => parseFloat(k.low)));
  if (hi === lo) { hi += hi * 0.001 || 1; lo -= lo * 0.001 || 1; }
  const pad = (hi - lo) * 0.08; hi += pad; lo -= pad;
  const y = (v) => 8 + (h - 24) * (1 - (v - lo) / (hi - lo));
  g.strokeStyle = '#1c232c'; g.fillStyle = '#7c8795';
  for (let i = 0; i <= 4; i++) {
    const v = lo + (hi - lo) * i / 4, yy = y(v);
    g.beginPath(); g.moveTo(0, yy); g.lineTo(w - axis, yy); g.stroke();
    g.fillText(v.toFixed(spec().pp), w - axis + 6, yy + 4);
  }
  const step = (w - axis - 10) / Math.max(cs.length, 30), bw = Math.max(2, step * 0.65);
  cs.forEach((k, i) => {
    const [o, cl, hh, ll] = [k.open, k.close, k.high, k.low].map(parseFloat);
    const x = 6 + i * step + step / 2, up = cl >= o;
    g.strokeStyle = g.fillStyle = up ? '#16c784' : '#ea3943';
    g.beginPath(); g.moveTo(x, y(hh)); g.lineTo(x, y(ll)); g.stroke();
    const top = y(Math.max(o, cl)), bot = y(Math.min(o, cl));
    g.fillRect(x - bw / 2, top, bw, Math.max(1, bot - top));
  });
  const last = parseFloat(cs[cs.length - 1].close);
  g.fillStyle = '#f0b90b'; g.fillRect(w - axis, y(last) - 8, axis, 16);
  g.fillStyle = '#111'; g.fillText(last.toFixed(spec().pp), w - axis + 6, y(last) + 4);
}

// ---------- account
// `creds`: {key, secret} (HMAC-signed requests) or {token} (a bearer ID token from the OIDC provider).
async function login(creds) {
  state.key = creds.key || null; state.secret = creds.secret || null; state.token = creds.token || null;
  try {
    const a = await api('GET', '/api/v1/account', '', null, true);
    state.account = a.account;
    state.balances = new Map(a.balances.map((b) => [b.asset, b]));
    $('login').classList.add('hidden'); $('token-form').classList.add('hidden'); $('account').classList.remove('hidden');
    $('account-label').textContent = `Account ${a.account}`;
    if (state.token) sessionStorage.setItem('castle.token', state.token);
    await Promise.all([loadOrders(), loadFills()]);
    renderBalances(); renderTicket();
    wsLogin();
    msg('', '');
  } catch (e) {
    state.key = state.secret = state.token = null;
    sessionStorage.removeItem('castle.token');
    msg(`Login failed: ${e.message}`, 'err');
  }
}
function logout() {
  state.key = state.secret = state.token = state.account = null;
  sessionStorage.removeItem('castle.token');
  state.orders.clear(); state.fills = []; state.balances.clear();
  $('login').classList.remove('hidden'); $('account').classList.add('hidden');
  renderOrders(); renderFills(); renderBalances(); renderTicket();
  if (state.ws) state.ws.close();
}
async function loadOrders() {
  state.orders.clear();
  let cursor = null;
  do {
    const p = await api('GET', '/api/v1/openOrders', `limit=500${cursor ? '&cursor=' + cursor : ''}`, null, true);
    p.orders.forEach((o) => state.orders.set(o.order_id, o));
    cursor = p.next_cursor;
  } while (cursor);
  renderOrders();
}
async function loadFills() {
  const p = await api('GET', '/api/v1/myTrades', 'limit=50', null, true);
  state.fills = p.fills; renderFills();
}
function renderBalances() {
  const rows = [...state.balances.values()].map((b) =>
    `<tr data-asset="${b.asset}"><td>${b.asset}</td><td>${b.available}</td><td>${b.locked}</td></tr>`);
  $('balances').querySelector('tbody').innerHTML = rows.join('') || '<tr><td colspan="3" class="muted">Log in to see balances</td></tr>';
  renderTicket();
}
function renderOrders() {
  const list = [...state.orders.values()].sort((a, b) => b.order_id - a.order_id);
  $('open-count').textContent = list.length;
  $('open-orders').querySelector('tbody').innerHTML = list.map((o) => {
    const s = state.symbols[o.symbol] || { pp: 2, qp: 5 };
    return `<tr data-order-id="${o.order_id}"><td>${hhmmss(o.created_time)}</td><td>${o.symbol}</td>` +
      `<td class="${o.side === 'BUY' ? 'buy' : 'sell'}">${o.side}</td><td>${o.type}</td><td>${o.price ? fmt(o.price, s.pp) : 'MARKET'}</td>` +
      `<td>${fmt(o.quantity, s.qp)}</td><td>${fmt(o.executed_quantity, s.qp)}</td><td>${o.status}</td>` +
      `<td><button class="cancel" data-cancel="${o.order_id}">Cancel</button></td></tr>`;
  }).join('') || `<tr><td colspan="9" class="muted">${state.account ? 'No open orders' : 'Log in to trade'}</td></tr>`;
  renderBook();
}
function renderFills() {
  $('fills').querySelector('tbody').innerHTML = state.fills.map((f) => {
    const s = state.symbols[f.symbol] || { pp: 2, qp: 5 };
    return `<tr data-fill-id="${f.fill_id}"><td>${hhmmss(f.time)}</td><td>${f.symbol}</td><td class="${f.side === 'BUY' ? 'buy' : 'sell'}">${f.side}</td>` +
      `<td>${fmt(f.price, s.pp)}</td><td>${fmt(f.quantity, s.qp)}</td><td>${f.fee} ${f.fee_asset}</td><td>${f.maker ? 'maker' : 'taker'}</td></tr>`;
  }).join('') || '<tr><td colspan="7" class="muted">No fills yet</td></tr>';
}

// ---------- order ticket
function msg(text, kind) { const m = $('ticket-msg'); m.textContent = text; m.className = 'msg ' + (kind || ''); }
function renderTicket() {
  const s = spec(); if (!s) return;
  const buy = state.side === 'BUY';
  $('side-buy').classList.toggle('active', buy); $('side-sell').classList.toggle('active', !buy);
  $('type-limit').classList.toggle('active', state.type === 'LIMIT'); $('type-market').classList.toggle('active', state.type === 'MARKET');
  $('price-field').classList.toggle('hidden', state.type === 'MARKET');
  const btn = $('submit');
  btn.className = 'submit ' + (buy ? 'buy' : 'sell');
  btn.disabled = !state.account;
  btn.textContent = state.account ? `${buy ? 'Buy' : 'Sell'} ${s.base_asset}` : 'Log in to trade';
  const p = $('price').value.trim(), q = $('qty').value.trim();
  $('total').textContent = state.type === 'LIMIT' && DEC.test(p) && DEC.test(q)
    ? `${fmt(mul(p, s.pp, q, s.qp), s.pp)} ${s.quote_asset}` : '\u2013';
  const asset = buy ? s.quote_asset : s.base_asset, bal = state.balances.get(asset);
  $('avail').textContent = bal ? `${bal.available} ${asset}` : '\u2013';
}
async function submitOrder(ev) {
  ev.preventDefault();
  const s = spec(), price = $('price').value.trim(), qty = $('qty').value.trim();
  if (state.type === 'LIMIT' && !DEC.test(price)) return msg('Enter a price', 'err');
  if (!DEC.test(qty)) return msg('Enter an amount', 'err');
  const body = { symbol: s.symbol, side: state.side, type: state.type, quantity: qty,
    client_order_id: 'web-' + Date.now().toString(36) + Math.random().toString(36).slice(2, 8) };
  if (state.type === 'LIMIT') body.price = price;
  $('submit').disabled = true;
  try {
    const o = await api('POST', '/api/v1/order', '', body, true);
    msg(`Order ${o.order_id} ${o.status.replace('_', ' ').toLowerCase()} \u2022 filled ${fmt(o.executed_quantity, s.qp)}`, 'ok');
    if (o.status === 'NEW' || o.status === 'PARTIALLY_FILLED') state.orders.set(o.order_id, o); else state.orders.delete(o.order_id);
    renderOrders();
  } catch (e) { msg(e.message, 'err'); }
  renderTicket();
}
async function cancelOrder(id) {
  try {
    const o = await api('DELETE', `/api/v1/order/${id}`, '', null, true);
    state.orders.delete(o.order_id); renderOrders();
    msg(`Order ${id} cancelled`, 'ok');
  } catch (e) { msg(e.message, 'err'); }
}

// ---------- single sign-on: OAuth 2.0 authorization code + PKCE (RFC 7636) against an OIDC provider
// (Cognito's hosted UI, or any provider whose ID tokens the gateway's JWKS verifies). The page is a
// public client: no secret; the PKCE verifier, state and nonce live in sessionStorage for the round trip.
const b64url = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const randomToken = () => b64url(crypto.getRandomValues(new Uint8Array(32)));
const redirectUri = () => location.origin + '/';
function jwtClaims(t) {
  const p = t.split('.')[1] || '';
  return JSON.parse(atob(p.replace(/-/g, '+').replace(/_/g, '/')));
}
async function startSso() {
  const o = state.oidc;
  const verifier = randomToken(), st = randomToken(), nonce = randomToken();
  const challenge = b64url(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier))));
  sessionStorage.setItem('castle.sso', JSON.stringify({ verifier, state: st, nonce }));
  const q = new URLSearchParams({ response_type: 'code', client_id: o.client_id, redirect_uri: redirectUri(),
    scope: o.scope, state: st, nonce, code_challenge: challenge, code_challenge_method: 'S256' });
  location.assign(o.authorization_endpoint + (o.authorization_endpoint.includes('?') ? '&' : '?') + q);
}
// Back from the provider with ?code=&state= (or ?error=): trade the code for tokens, sign in with the ID token.
async function finishSso(params) {
  history.replaceState(null, '', location.pathname); // the code is single-use: drop it from the address bar
  const saved = JSON.parse(sessionStorage.getItem('castle.sso') || 'null');
  sessionStorage.removeItem('castle.sso');
  if (params.get('error')) throw new Error(params.get('error_description') || params.get('error'));
  if (!saved || params.get('state') !== saved.state) throw new Error('state mismatch (start the sign-in again)');
  const o = state.oidc;
  const r = await fetch(o.token_endpoint, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', client_id: o.client_id, code: params.get('code'),
      redirect_uri: redirectUri(), code_verifier: saved.verifier }) });
  const j = await r.json().catch(() => null);
  if (!r.ok || !j || !j.id_token) throw new Error((j && (j.error_description || j.error)) || `token endpoint HTTP ${r.status}`);
  if (jwtClaims(j.id_token).nonce !== saved.nonce) throw new Error('nonce mismatch');
  await login({ token: j.id_token });
}
async function initSignIn() {
  const o = await fetch('/oidc.json').then((r) => r.json()).catch(() => ({ enabled: false, bearer: false }));
  state.oidc = o.enabled ? o : null;
  if (o.enabled) { $('oidc-btn').textContent = o.label; $('oidc-btn').classList.remove('hidden'); }
  if (o.bearer) $('token-toggle').classList.remove('hidden');
  const params = new URLSearchParams(location.search);
  if (state.oidc && (params.get('code') || params.get('error'))) return finishSso(params);
  const kept = sessionStorage.getItem('castle.token');
  if (o.bearer && kept) await login({ token: kept });
}

// ---------- WebSocket
function wsSend(m) { if (state.ws && state.ws.readyState === 1) state.ws.send(JSON.stringify(m)); }
async function wsLogin() {
  if (!state.ws || state.ws.readyState !== 1) return;
  if (state.token) { wsSend({ op: 'login', token: state.token }); return; }
  if (!state.key) return;
  const ts = stamp();
  wsSend({ op: 'login', api_key: state.key, timestamp: ts, signature: await hmacHex(state.secret, ts + 'GET/api/v1/ws') });
}
function connectWs() {
  const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/api/v1/ws');
  state.ws = ws;
  ws.onopen = () => {
    $('ws-status').textContent = 'live'; $('ws-status').className = 'pill on';
    if (state.symbol) { wsSend({ op: 'subscribe', channels: channels(state.symbol) }); resyncBook(); }
    wsLogin();
  };
  ws.onclose = () => {
    $('ws-status').textContent = 'offline'; $('ws-status').className = 'pill off';
    setTimeout(connectWs, 1000);
  };
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    switch (m.stream) {
      case 'depth': applyDiff(m); break;
      case 'trades':
        if (m.symbol === state.symbol) { state.trades.unshift(m); state.trades.length = Math.min(state.trades.length, 60); state.lastPrice = m.price; renderTrades(); }
        break;
      case 'ticker': renderTicker(m); break;
      case 'candles':
        if (m.symbol === state.symbol && m.interval === '1m') {
          const last = state.candles[state.candles.length - 1];
          if (last && last.open_time === m.open_time) state.candles[state.candles.length - 1] = m; else state.candles.push(m);
          drawChart();
        }
        break;
      case 'orders':
        if (m.status === 'NEW' || m.status === 'PARTIALLY_FILLED') state.orders.set(m.order_id, m); else state.orders.delete(m.order_id);
        renderOrders(); break;
      case 'fills': state.fills.unshift(m); state.fills.length = Math.min(state.fills.length, 100); renderFills(); break;
      case 'balances': state.balances.set(m.asset, m); renderBalances(); break;
      default:
        if (m.op === 'error') console.warn('stream error', m);
    }
  };
}

// ---------- wiring
$('symbol').addEventListener('change', (e) => selectSymbol(e.target.value));
$('login').addEventListener('submit', (e) => { e.preventDefault(); login({ key: $('key-id').value.trim(), secret: $('key-secret').value.trim() }); });
$('oidc-btn').addEventListener('click', () => startSso().catch((e) => msg('Sign-in failed: ' + e.message, 'err')));
$('token-toggle').addEventListener('click', () => $('token-form').classList.toggle('hidden'));
$('token-form').addEventListener('submit', (e) => { e.preventDefault(); login({ token: $('token').value.trim() }); $('token').value = ''; });
$('logout-btn').addEventListener('click', logout);
$('side-buy').addEventListener('click', () => { state.side = 'BUY'; renderTicket(); });
$('side-sell').addEventListener('click', () => { state.side = 'SELL'; renderTicket(); });
$('type-limit').addEventListener('click', () => { state.type = 'LIMIT'; renderTicket(); });
$('type-market').addEventListener('click', () => { state.type = 'MARKET'; renderTicket(); });
$('price').addEventListener('input', renderTicket);
$('qty').addEventListener('input', renderTicket);
$('ticket').addEventListener('submit', submitOrder);
$('open-orders').addEventListener('click', (e) => { const id = e.target.dataset.cancel; if (id) cancelOrder(id); });
$('book-asks').addEventListener('click', (e) => { const r = e.target.closest('.lvl'); if (r) $('price').value = r.dataset.price; renderTicket(); });
$('book-bids').addEventListener('click', (e) => { const r = e.target.closest('.lvl'); if (r) $('price').value = r.dataset.price; renderTicket(); });
$('tab-open').addEventListener('click', () => { $('tab-open').classList.add('active'); $('tab-fills').classList.remove('active'); $('open-orders').classList.remove('hidden'); $('fills').classList.add('hidden'); });
$('tab-fills').addEventListener('click', () => { $('tab-fills').classList.add('active'); $('tab-open').classList.remove('active'); $('fills').classList.remove('hidden'); $('open-orders').classList.add('hidden'); });
$('cancel-all').addEventListener('click', async () => {
  if (!state.account) return;
  try { const r = await api('DELETE', '/api/v1/openOrders', '', null, true); r.cancelled.forEach((o) => state.orders.delete(o.order_id)); renderOrders(); msg(`${r.cancelled.length} orders cancelled`, 'ok'); }
  catch (e) { msg(e.message, 'err'); }
});
window.addEventListener('resize', drawChart);
setInterval(() => { $('clock').textContent = new Date().toISOString().replace('T', ' ').slice(0, 19) + ' UTC'; }, 1000);
renderOrders(); renderFills(); renderBalances();
loadInstruments().then(connectWs).catch((e) => msg('Cannot reach the gateway: ' + e.message, 'err'));
initSignIn().catch((e) => msg('Sign-in failed: ' + e.message, 'err'));
