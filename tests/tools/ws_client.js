// SPDX-License-Identifier: MIT
// A WebSocket client on node-ws (Debian node-ws 8.11) for portico's integration tests: the
// second real client implementation next to python3-websockets. It sends the messages of a
// JSON spec one at a time to an echo endpoint, checks each echo (type, length, SHA-256), can
// ping, then closes and prints one JSON line with what it saw.
//
//   NODE_PATH=/usr/share/nodejs node ws_client.js '{"url": "ws://127.0.0.1:PORT/echo", ...}'
//
// spec: url; ca (a PEM path for wss://); protocols (list); deflate (bool, default false);
//       messages: [{size, kind: "text" | "binary"}]; ping (bool); close (code, default 1000);
//       timeout_ms (default 30000)
// report: {open, protocol, extensions, results: [{size, kind, ok, got_len, got_binary}],
//          pong, close_code, close_reason, error}
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const WebSocket = require('ws');

const spec = JSON.parse(process.argv[2]);
const report = { open: false, protocol: null, extensions: null, results: [], pong: false,
                 close_code: null, close_reason: null, error: null };
let done = false;

function finish() {
  if (done) return;
  done = true;
  process.stdout.write(JSON.stringify(report) + '\n');
  process.exit(0);
}

setTimeout(() => { report.error = 'timeout'; finish(); }, spec.timeout_ms || 30000);

function payload(m) {
  // random bytes; the echo is compared with what was sent
  const out = crypto.randomBytes(m.size);
  if (m.kind === 'text') {
    for (let k = 0; k < out.length; k++) out[k] = 0x41 + (out[k] % 26); // 'A'..'Z'
    return out.toString('latin1');
  }
  return out;
}

const opts = { perMessageDeflate: !!spec.deflate, maxPayload: 64 * 1024 * 1024 };
if (spec.ca) opts.ca = fs.readFileSync(spec.ca);
const ws = new WebSocket(spec.url, spec.protocols || [], opts);
const queue = (spec.messages || []).map((m) => ({ m }));
let current = null;

function next() {
  if (queue.length === 0) {
    if (spec.ping) {
      ws.ping(Buffer.from('portico-ping'));
      return;
    }
    ws.close(spec.close || 1000, 'client done');
    return;
  }
  current = queue.shift();
  current.data = payload(current.m);
  ws.send(current.data, { binary: current.m.kind === 'binary' });
}

ws.on('open', () => {
  report.open = true;
  report.protocol = ws.protocol;
  report.extensions = ws.extensions;
  next();
});

ws.on('message', (data, isBinary) => {
  const m = current.m;
  const sent = Buffer.isBuffer(current.data) ? current.data
                                             : Buffer.from(current.data, 'latin1');
  const got = Buffer.isBuffer(data) ? data : Buffer.concat(data);
  const h = (b) => crypto.createHash('sha256').update(b).digest('hex');
  report.results.push({ size: m.size, kind: m.kind, got_len: got.length,
                        got_binary: isBinary,
                        ok: got.length === sent.length && h(got) === h(sent) &&
                            isBinary === (m.kind === 'binary') });
  next();
});

ws.on('pong', (data) => {
  report.pong = data.toString() === 'portico-ping';
  ws.close(spec.close || 1000, 'client done');
});

ws.on('unexpected-response', (req, res) => {
  report.error = `unexpected-response ${res.statusCode}`;
  finish();
});

ws.on('error', (e) => { report.error = String(e); });

ws.on('close', (code, reason) => {
  report.close_code = code;
  report.close_reason = reason.toString();
  finish();
});
