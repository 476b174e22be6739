// Resource release (issue 11): whatever way a connection ends, the server gives back its file
// descriptor, its socket and its memory. Reads the server's open fds (/proc/<pid>/fd), RSS
// (/proc/<pid>/status VmRSS) and its sockets' TCP states (/proc/net/tcp{,6}, local port = the
// server's port) around rounds of connections:
//   - per transport: 500 connections, 50 at a time, half closed cleanly and half aborted at
//     every point (mid-head, mid-upgrade, mid-body, mid-frame, mid-stream; RST and FIN);
//   - slow consumers cut off with 3008 (client_queue_max_size is small in release.json), some
//     of which never read again;
//   - a flood of `{"send":{}}` commands (bidirectional WebSocket JSON and Protobuf, /emulation),
//     last: a server without a bounded inbox may stay busy with it for long.
// After each round, waits (bounded) for fds back within +5 of the level before the round, RSS
// within +10 MB, and no new server socket in CLOSE-WAIT; at the end, everything against the
// idle server's fds and the RSS after a warm-up round. Prints a table of the numbers.
//
// Needs ROTOR_URL, ROTOR_PID (tests/server.sh exports both), ROTOR_API_KEY, ROTOR_HMAC_SECRET.
// RELEASE_N and RELEASE_CONCURRENCY change the round size (default 500 and 50).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { PORT, HttpConn, Ws, wsFrame, PB_SEND, sleep, uniq } from './clients.mjs';
import { KINDS, connection, openWs, openStream } from './transports.mjs';

const PID = Number(process.env.ROTOR_PID);
const N = Number(process.env.RELEASE_N || 500);
const CONCURRENCY = Number(process.env.RELEASE_CONCURRENCY || 50);
const WARMUP_N = 100;
const FD_MARGIN = 5;
const RSS_MARGIN_MB = 10;
/** The whole run against the RSS after warm-up: each round may keep a little (allocator). */
const OVERALL_RSS_MARGIN_MB = 20;
const SETTLE_MS = 10_000;
const FLOOD_MS = 3000;
/** The flood stops early when the server's RSS passes this (the machine is shared). */
const FLOOD_RSS_CAP_MB = 1536;
const SLOW_PER_KIND = 4;
const SLOW_KINDS = ['ws-json', 'ws-protobuf', 'uni-ws', 'uni-http-stream', 'uni-sse-post', 'http-stream'];
const SLOW_PAYLOAD = 32 * 1024;
const SLOW_PUBLICATIONS = 250;
/** Longer than any write timeout a server should have (Centrifugo: 1 s; rotor's uni path: 10 s). */
const STALLED_SETTLE_MS = 12_000;

// ---- what the server holds

const TCP_STATES = {
  '01': 'ESTABLISHED', '02': 'SYN_SENT', '03': 'SYN_RECV', '04': 'FIN_WAIT1', '05': 'FIN_WAIT2', '06': 'TIME_WAIT',
  '07': 'CLOSE', '08': 'CLOSE_WAIT', '09': 'LAST_ACK', '0A': 'LISTEN', '0B': 'CLOSING',
};

/** The server's connected sockets (local port = its port): client port → TCP state. */
function serverSocketTable() {
  const byPeer = new Map();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text;
    try { text = readFileSync(file, 'utf8'); } catch { continue; }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 4 || parseInt(cols[1].split(':').pop(), 16) !== PORT) continue;
      const state = TCP_STATES[cols[3]] ?? cols[3];
      if (state !== 'LISTEN') byPeer.set(parseInt(cols[2].split(':').pop(), 16), state);
    }
  }
  return byPeer;
}

/** The server's connected sockets by TCP state. */
function serverSockets() {
  const counts = {};
  for (const state of serverSocketTable().values()) counts[state] = (counts[state] ?? 0) + 1;
  return counts;
}

/** A server socket the server has not closed yet (after the client left, that is a leak). */
const HELD = new Set(['ESTABLISHED', 'CLOSE_WAIT']);

/**
 * Which of `conns` ({ label, port }) the server still holds, by label and state, e.g.
 * "clean 250 CLOSE_WAIT, mid-stream/fin 25 CLOSE_WAIT". A socket the client reset is no longer
 * listed by the kernel even while the server keeps its fd, so those are not attributed here.
 */
function heldBy(conns = []) {
  const table = serverSocketTable();
  const counts = new Map();
  for (const { label, port } of conns) {
    const state = table.get(port);
    if (!HELD.has(state)) continue;
    const key = `${label} ${state}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return { total: [...counts.values()].reduce((a, b) => a + b, 0), text: [...counts].map(([k, n]) => `${k.replace(' ', ` ${n} `)}`).join(', ') };
}

const rssKb = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${PID}/status`, 'utf8'))[1]);

function snapshot() {
  const socks = serverSockets();
  return { fds: readdirSync(`/proc/${PID}/fd`).length, rssKb: rssKb(), closeWait: socks.CLOSE_WAIT ?? 0, socks };
}

const mb = (kb) => (kb / 1024).toFixed(1);
const signed = (n, digits = 0) => `${n >= 0 ? '+' : ''}${n.toFixed(digits)}`;

/**
 * Polls until fds are within `fdMargin` of `ref`, RSS within `rssMarginMb`, CLOSE-WAIT at
 * most `maxCloseWait` and `also()` holds — or `ms` passed. Returns the last snapshot and
 * whether it held.
 */
async function settle(ref, { ms = SETTLE_MS, fdMargin = FD_MARGIN, rssMarginMb = RSS_MARGIN_MB, maxCloseWait = ref.closeWait, quietMs = Infinity, also = () => true } = {}) {
  const t0 = Date.now();
  let last = null;
  let since = t0;
  for (;;) {
    const s = snapshot();
    const ok = s.fds <= ref.fds + fdMargin && s.rssKb <= ref.rssKb + rssMarginMb * 1024 && s.closeWait <= maxCloseWait && also();
    if (!last || s.fds !== last.fds || s.closeWait !== last.closeWait) since = Date.now();
    last = s;
    // `quietMs`: also stop once nothing changed for that long (the warm-up only waits for calm).
    if (ok || Date.now() - t0 >= ms || Date.now() - since >= quietMs) return { after: s, ok, ms: Date.now() - t0, limits: { fdMargin, rssMarginMb, maxCloseWait, waited: ms } };
    await sleep(200);
  }
}

// ---- the report

const rows = [];

function record(name, ref, settled, stats = {}, extra = '', asserted = true) {
  const { after: s, ok, ms } = settled;
  const row = { name, ref, s, ok, ms, stats, extra, limits: settled.limits, asserted };
  rows.push(row);
  return row;
}

function describeRow(r) {
  const { ref, s, stats, limits } = r;
  const conns = stats.n ? `; ${stats.n} connections (${stats.clean} clean, ${stats.aborted} aborted, ${stats.failed} failed${stats.errors?.length ? `: ${stats.errors.join(' | ')}` : ''})` : '';
  const others = Object.entries(s.socks).filter(([k]) => k !== 'CLOSE_WAIT').map(([k, v]) => `${k} ${v}`).join(', ');
  return `${r.name}: ${r.ok ? 'released' : `not released within ${limits.waited / 1000} s`} — `
    + `fds ${ref.fds} → ${s.fds} (${signed(s.fds - ref.fds)}, allowed +${limits.fdMargin}), `
    + `RSS ${mb(ref.rssKb)} → ${mb(s.rssKb)} MB (${signed((s.rssKb - ref.rssKb) / 1024, 1)}, allowed +${limits.rssMarginMb}), `
    + `server sockets in CLOSE-WAIT ${ref.closeWait} → ${s.closeWait} (allowed ${limits.maxCloseWait})`
    + `${others ? `, other server sockets: ${others}` : ''}${conns}${r.extra ? `; ${r.extra}` : ''}`;
}

function printTable() {
  const head = ['step', 'conns', 'clean', 'abort', 'fail', 'fds before→after', 'RSS MB before→after', 'CLOSE-WAIT', 'settled', 'result', 'notes'];
  const body = rows.map((r) => [
    r.name, String(r.stats.n ?? ''), String(r.stats.clean ?? ''), String(r.stats.aborted ?? ''), String(r.stats.failed ?? ''),
    `${r.ref.fds}→${r.s.fds} (${signed(r.s.fds - r.ref.fds)})`,
    `${mb(r.ref.rssKb)}→${mb(r.s.rssKb)} (${signed((r.s.rssKb - r.ref.rssKb) / 1024, 1)})`,
    `${r.ref.closeWait}→${r.s.closeWait}`, `${(r.ms / 1000).toFixed(1)} s`, !r.asserted ? '-' : r.ok ? 'ok' : 'LEAK', r.extra,
  ]);
  const width = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(width[i]))).join('  ');
  console.log(`\nresource release (server pid ${PID}, port ${PORT}; fds margin +${FD_MARGIN}, RSS margin +${RSS_MARGIN_MB} MB per step)`);
  console.log(line(head));
  for (const b of body) console.log(line(b));
}

// ---- rounds

/** `n` connections of `kind`, `concurrency` at a time; each is bounded by its own waits. */
async function churn(kind, n, concurrency = CONCURRENCY) {
  const stats = { n, clean: 0, aborted: 0, failed: 0, errors: [] };
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, async () => {
    while (next < n) {
      const k = next++;
      try {
        await connection(kind, k, stats);
      } catch (e) {
        stats.failed += 1;
        if (stats.errors.length < 3) stats.errors.push(`#${k}: ${e.message}`);
      }
    }
  }));
  return stats;
}

/** Asserts a recorded row: released, and every connection did what it was meant to. */
function check(row) {
  assert.ok(row.ok, describeRow(row));
  assert.equal(row.stats.failed ?? 0, 0, describeRow(row));
}

describe('resource release', { concurrency: 1 }, () => {
  let fresh;
  let warm;

  before(async () => {
    assert.ok(PID > 0, 'ROTOR_PID (the server process id) is needed: start the server with tests/server.sh');
    fresh = snapshot();
    // Warm-up: every transport once, so the allocator and runtime reach their working size.
    const stats = { n: 0, clean: 0, aborted: 0, failed: 0, errors: [] };
    for (const kind of KINDS) {
      const s = await churn(kind, WARMUP_N);
      for (const k of ['n', 'clean', 'aborted', 'failed']) stats[k] += s[k];
      stats.errors.push(...s.errors.slice(0, 1).map((e) => `${kind} ${e}`));
    }
    // Let what the warm-up opened go away (bounded), then take the RSS baseline.
    const settled = await settle(fresh, { rssMarginMb: Infinity, maxCloseWait: 0, quietMs: 2000 });
    warm = snapshot();
    record('warm-up (all transports)', fresh, settled, stats, 'not checked; baselines: fds of the idle server, RSS after this round', false);
  });

  after(() => printTable());

  for (const kind of KINDS) {
    it(`${kind}: ${N} connections opened and closed (half clean, half aborted) give back fds, memory and sockets`, async () => {
      const ref = snapshot();
      const stats = await churn(kind, N);
      const settled = await settle(ref);
      const notes = [];
      if (kind.includes('ws')) notes.push(`server answered ${stats.closeAnswered ?? 0}/${stats.clean} close frames`);
      if (!settled.ok) {
        const held = heldBy(stats.conns);
        if (held.total) notes.push(`server still holds (by how the client left): ${held.text}`);
        const other = settled.after.fds - ref.fds - held.total;
        if (other > 0) notes.push(`${other} more fds (sockets the client reset, which the kernel no longer lists)`);
      }
      check(record(kind, ref, settled, stats, notes.join('; ')));
    });
  }

  it('slow consumers cut off with 3008 are released, also those that never read again', async () => {
    const ref = snapshot();
    const channel = `slow:${uniq('c')}`;
    const clients = [];
    let published = 0;
    try {
      for (const kind of SLOW_KINDS) {
        for (let i = 0; i < SLOW_PER_KIND; i++) {
          const c = kind.includes('ws') ? await openWs(kind, { subscribe: channel }) : await openStream(kind, channel);
          c.s.pause(); // stops reading: the kernel buffers fill, then the server's queue
          clients.push({ kind, c, resumed: i < SLOW_PER_KIND / 2 });
        }
      }
      const api = new HttpConn();
      try {
        await api.open();
        const data = { p: 'x'.repeat(SLOW_PAYLOAD) };
        for (; published < SLOW_PUBLICATIONS; published++) {
          const r = await api.api('publish', { channel, data }, 10_000);
          assert.equal(r.status, 200, r.body);
        }
      } finally {
        api.s.destroy();
      }
      // Half of them read again: each must find a 3008 disconnect at the end of what it got.
      const cut = (c) => (c instanceof Ws ? c.closeCode === 3008 : c.tail.includes('"code":3008'));
      const resumed = clients.filter((x) => x.resumed);
      for (const { c } of resumed) c.s.resume();
      await Promise.all(resumed.map(({ c }) => c.until(() => cut(c), '3008', SETTLE_MS).catch(() => {})));
      for (const { c } of resumed) {
        if (c instanceof Ws && c.closeCode !== null) await c.until(() => c.ended, 'end after close', 1000).catch(() => {});
        c.s.destroy();
      }
      const resumedCut = resumed.filter(({ c }) => cut(c)).length;
      // The other half never read: the server must still let go of them (write timeout).
      const stalled = clients.filter((x) => !x.resumed);
      const isHeldIn = (table) => (x) => HELD.has(table.get(x.c.localPort));
      // Waits for them, not only for the fds: a few still held fit the fd margin, and
      // stopping there would not give them the write (or close handshake) timeout.
      const held = await settle(ref, { ms: STALLED_SETTLE_MS, also: () => !stalled.some(isHeldIn(serverSocketTable())) });
      const isHeld = isHeldIn(serverSocketTable());
      const stillHeld = SLOW_KINDS.map((k) => `${k} ${stalled.filter((x) => x.kind === k && isHeld(x)).length}/${stalled.filter((x) => x.kind === k).length}`).join(', ');
      // Few connections: the fd margin could hide them, so none of them may still be held.
      held.ok &&= !stalled.some(isHeld);
      const heldRow = record('slow: stalled readers still open', ref, held, {},
        `${stalled.length} clients not reading, ${published} × ${SLOW_PAYLOAD / 1024} KiB published; the server still holds ${stillHeld}`);
      // Then they read what the kernel kept, and close.
      for (const { c } of stalled) c.s.resume();
      await Promise.all(stalled.map(({ c }) => c.until(() => cut(c), '3008', 3000).catch(() => {})));
      const stalledCut = stalled.filter(({ c }) => cut(c)).length;
      for (const { c } of stalled) c.s.destroy();
      const perKind = SLOW_KINDS.map((k) => `${k} ${clients.filter((x) => x.kind === k && cut(x.c)).length}/${SLOW_PER_KIND}`).join(', ');
      const all = record('slow: all closed', ref, await settle(ref), {},
        `3008 seen by ${resumedCut}/${resumed.length} that read again and ${stalledCut}/${stalled.length} stalled (${perKind})`);
      const failures = [heldRow, all].filter((r) => !r.ok).map(describeRow);
      assert.deepEqual(failures, [], failures.join('\n'));
      // A stalled client may be cut off before the disconnect could be written (write timeout);
      // one that reads again must find the 3008.
      assert.equal(resumedCut, resumed.length, `every slow consumer that reads again finds 3008: ${describeRow(all)}`);
    } finally {
      for (const { c } of clients) c.s.destroy();
    }
  });

  it(`a flood of {"send":{}} commands for ${FLOOD_MS / 1000} s (WebSocket JSON and Protobuf, /emulation) is released`, async () => {
    const ref = snapshot();
    const clients = [];
    const sent = { frames: 0, commands: 0, posts: 0 };
    let peakKb = ref.rssKb;
    let capped = false;
    const stats = { n: 0, clean: 0, aborted: 0, failed: 0, errors: [] };
    try {
      for (const kind of ['ws-json', 'ws-json', 'ws-protobuf', 'ws-protobuf']) clients.push({ kind, c: await openWs(kind) });
      const stream = await openStream('http-stream');
      const m = /"session":"([^"]+)".*?"node":"([^"]+)"/.exec(stream.tail);
      assert.ok(m, `emulation connect reply with session and node: ${stream.tail.slice(0, 300)}`);
      const jsonCommands = 2000;
      const pbCommands = 8000;
      const frames = {
        'ws-json': wsFrame(1, Array(jsonCommands).fill('{"send":{}}').join('\n')),
        'ws-protobuf': wsFrame(2, Buffer.concat(Array(pbCommands).fill(PB_SEND))),
      };
      const perFrame = { 'ws-json': jsonCommands, 'ws-protobuf': pbCommands };
      const emulationBody = JSON.stringify({ session: m[1], node: m[2], data: Array(jsonCommands).fill('{"send":{}}').join('\n') });
      let stop = false;
      const deadline = Date.now() + FLOOD_MS;
      const watch = setInterval(() => {
        const r = rssKb();
        peakKb = Math.max(peakKb, r);
        if (r > FLOOD_RSS_CAP_MB * 1024) capped = true;
        if (capped || Date.now() > deadline) stop = true;
      }, 50);
      const wsWriters = clients.map(async ({ kind, c }) => {
        // Never more than 256 KiB waiting in this process: the flood is the server's problem.
        // It yields to the event loop every few frames and checks the clock itself: a socket
        // that keeps taking data synchronously must not starve the timer that ends the flood.
        let written = 0;
        while (!stop && !c.closed && Date.now() < deadline) {
          if (c.s.writableLength > 256 * 1024) { await sleep(2); continue; }
          c.s.write(frames[kind]);
          sent.frames += 1;
          sent.commands += perFrame[kind];
          if (++written % 8 === 0) await new Promise((r) => setImmediate(r));
        }
      });
      const posters = [0, 1].map(async () => {
        const post = new HttpConn();
        try {
          await post.open();
          while (!stop && Date.now() < deadline) {
            const r = await post.call('POST', '/emulation', { headers: { 'Content-Type': 'application/json' }, body: emulationBody }, 10_000);
            if (r.status !== 204) throw new Error(`/emulation: HTTP ${r.status} ${r.body}`);
            sent.posts += 1;
            sent.commands += jsonCommands;
          }
        } catch (e) {
          if (!stop) stats.errors.push(`/emulation flood: ${e.message}`);
        } finally {
          post.s.destroy();
        }
      });
      await Promise.all([...wsWriters, ...posters]);
      clearInterval(watch);
      peakKb = Math.max(peakKb, rssKb());
      // The flooders leave: WebSockets with a close frame (bounded), the stream by closing.
      await Promise.all(clients.map(({ c }) => c.closeCleanly().catch(() => {})));
      stream.s.destroy();
    } finally {
      for (const { c } of clients) c.s.destroy();
    }
    const extra = `${sent.frames} WebSocket frames + ${sent.posts} /emulation posts = ${sent.commands} commands; `
      + `peak RSS ${mb(peakKb)} MB${capped ? ` (flood stopped at the ${FLOOD_RSS_CAP_MB} MB cap)` : ''}`
      + `${stats.errors.length ? `; ${stats.errors.join(' | ')}` : ''}`;
    check(record('flood', ref, await settle(ref), {}, extra));
  });

  it('after everything: fds and CLOSE-WAIT back to the idle server, RSS near the warm-up baseline', async () => {
    // Every step had its own wait; this one only gives a late release a moment more.
    const settled = await settle({ ...warm, fds: fresh.fds, closeWait: 0 }, { ms: 3000, rssMarginMb: OVERALL_RSS_MARGIN_MB, maxCloseWait: 0 });
    const row = record('overall (vs idle fds, warm RSS)', { ...warm, fds: fresh.fds, closeWait: 0 }, settled, {});
    check(row);
  });
});
