// Unit tests of stripe-bridge.js under Node's built-in test runner, with a fake WebSocket.
// Run: node --test tests/js/   (tests/test_js_client.py runs it from pytest).
"use strict";

const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const test = require("node:test");
const vm = require("node:vm");

const SOURCE = path.join(
  __dirname, "..", "..", "django_stripe_bridge", "static", "django_stripe_bridge", "stripe-bridge.js"
);
const StripeBridge = require(SOURCE);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(predicate, what, timeout = 2000) {
  const deadline = Date.now() + timeout;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for " + what);
    await sleep(2);
  }
}

function fakeSockets() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      sockets.push(this);
    }
    send(text) {
      if (this.readyState !== 1) throw new Error("send on a socket that is not open");
      this.sent.push(JSON.parse(text));
    }
    close(code) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      setTimeout(() => this.onclose && this.onclose({ code: code || 1005, reason: "" }), 0);
    }
    // -- driven by the tests --
    open() {
      this.readyState = 1;
      this.onopen && this.onopen({});
    }
    receive(frame) {
      this.onmessage && this.onmessage({ data: JSON.stringify(frame) });
    }
    drop(code) {
      this.readyState = 3;
      this.onclose && this.onclose({ code: code || 1006, reason: "" });
    }
  }
  return { FakeWebSocket, sockets };
}

function message(sub, eventId, status, replayed) {
  return {
    type: "message", subscription: sub, channel: "stripe",
    headers: { id: "ch_1", event_id: eventId, status: status }, data: {}, replayed: !!replayed,
  };
}

function connect(options) {
  const fake = fakeSockets();
  const bridge = StripeBridge.connect("ws://example.test/ws/stripe/", Object.assign(
    { WebSocket: fake.FakeWebSocket, minDelay: 10, maxDelay: 80, pingInterval: 0 }, options || {}
  ));
  return { bridge, sockets: fake.sockets };
}

test("subscribes once open, delivers messages, unsubscribes", () => {
  const { bridge, sockets } = connect({ replay: "none" });
  const got = [];
  const sub = bridge.subscribe("stripe", "id = 'ch_1'", (m) => got.push(m.headers.event_id));
  assert.equal(sockets.length, 1);
  sockets[0].open();
  assert.deepEqual(sockets[0].sent, [
    { action: "subscribe", subscription: sub.name, channel: "stripe",
      selector: "id = 'ch_1'", replay: "none" },
  ]);
  sockets[0].receive({ type: "subscribed", subscription: sub.name });
  sockets[0].receive(message(sub.name, "evt_1", "succeeded"));
  sockets[0].receive(message("someone-else", "evt_x", "succeeded"));
  assert.deepEqual(got, ["evt_1"]);
  sub.unsubscribe();
  assert.deepEqual(sockets[0].sent[1], { action: "unsubscribe", subscription: sub.name });
  sockets[0].receive(message(sub.name, "evt_2", "refunded"));
  assert.deepEqual(got, ["evt_1"]);
  bridge.close();
});

test("reconnects with backoff and re-subscribes with replay, dropping repeats", async () => {
  const { bridge, sockets } = connect();
  const got = [];
  const delays = [];
  bridge.on("reconnecting", (d) => delays.push(d.delay));
  const sub = bridge.subscribe("stripe/ch_1", null, (m) => got.push([m.headers.event_id, m.replayed]),
    { subscription: "s1" });
  sockets[0].open();
  assert.equal(sockets[0].sent[0].replay, undefined, "first subscribe: the server's default");
  sockets[0].receive({ type: "subscribed", subscription: "s1" });
  sockets[0].receive(message("s1", "evt_1", "pending"));
  sockets[0].drop(1006);
  await until(() => sockets.length === 2, "a new socket");
  assert.ok(delays[0] >= 5 && delays[0] <= 10, "first delay within [min/2, min]: " + delays[0]);
  sockets[1].open();
  assert.deepEqual(sockets[1].sent[0],
    { action: "subscribe", subscription: "s1", channel: "stripe/ch_1", replay: "latest" });
  sockets[1].receive({ type: "subscribed", subscription: "s1" });
  sockets[1].receive(message("s1", "evt_1", "pending", true)); // seen: dropped
  sockets[1].receive(message("s1", "evt_2", "succeeded", true)); // missed while away
  assert.deepEqual(got, [["evt_1", false], ["evt_2", true]]);
  assert.equal(sub.active, true);
  bridge.close();
});

test("replay 'all' stays 'all' after a reconnect", async () => {
  const { bridge, sockets } = connect();
  bridge.subscribe("stripe", "id = 'ch_1'", () => {}, { replay: "all", subscription: "s1" });
  sockets[0].open();
  sockets[0].receive({ type: "subscribed", subscription: "s1" });
  sockets[0].drop();
  await until(() => sockets.length === 2, "a new socket");
  sockets[1].open();
  assert.equal(sockets[0].sent[0].replay, "all");
  assert.equal(sockets[1].sent[0].replay, "all");
  bridge.close();
});

test("backoff doubles per failure, is capped, and resets after a stable connection", async () => {
  const { bridge, sockets } = connect({ minDelay: 4, maxDelay: 16, stableAfter: 30 });
  const delays = [];
  bridge.on("reconnecting", (d) => delays.push([d.attempt, d.delay]));
  bridge.subscribe("stripe", "id = 'ch_1'", () => {}, { subscription: "s1" });
  for (let i = 0; i < 5; i++) {
    sockets[i].drop(1006); // never opened: the server is down
    await until(() => sockets.length === i + 2, "socket " + (i + 2));
  }
  const ceilings = [4, 8, 16, 16, 16];
  delays.forEach(([attempt, delay], i) => {
    assert.equal(attempt, i + 1);
    assert.ok(delay >= ceilings[i] / 2 && delay <= ceilings[i], `delay ${i}: ${delay}`);
  });
  sockets[5].open();
  sockets[5].receive({ type: "subscribed", subscription: "s1" });
  await sleep(40); // open for longer than stableAfter
  sockets[5].drop(1006);
  await until(() => delays.length === 6, "the next reconnect");
  assert.equal(delays[5][0], 1, "back to the first delay");
  bridge.close();
});

test("a server that closes right after subscribing does not reset the backoff", async () => {
  // What the server does while its database is down: "subscribed", then replay fails and
  // the socket is closed (1011). Reconnecting at the first delay forever would hammer it.
  const { bridge, sockets } = connect({ minDelay: 4, maxDelay: 64, stableAfter: 10000 });
  const attempts = [];
  bridge.on("reconnecting", (d) => attempts.push(d.attempt));
  bridge.subscribe("stripe", "id = 'ch_1'", () => {}, { subscription: "s1" });
  for (let i = 0; i < 4; i++) {
    sockets[i].open();
    sockets[i].receive({ type: "subscribed", subscription: "s1" });
    sockets[i].receive({ type: "pong" });
    sockets[i].drop(1011);
    await until(() => sockets.length === i + 2, "socket " + (i + 2));
  }
  assert.deepEqual(attempts, [1, 2, 3, 4]);
  bridge.close();
});

test("backoffDelay has jitter", () => {
  const values = new Set();
  for (let i = 0; i < 20; i++) values.add(StripeBridge.backoffDelay(3, 500, 30000));
  assert.ok(values.size > 1);
  for (const v of values) assert.ok(v >= 2000 && v <= 4000);
});

test("a refused subscription reports the error and is not made again", async () => {
  const { bridge, sockets } = connect();
  const errors = [];
  const refused = [];
  bridge.on("error", (e) => errors.push(e.code));
  const bad = bridge.subscribe("stripe", "amount >", () => {}, {
    subscription: "bad", onError: (frame) => refused.push(frame.code),
  });
  bridge.subscribe("stripe", "id = 'ch_1'", () => {}, { subscription: "good" });
  sockets[0].open();
  sockets[0].receive({ type: "error", code: "invalid_selector", message: "x at column 9",
    subscription: "bad" });
  sockets[0].receive({ type: "error", code: "bad_frame", message: "?", subscription: null });
  assert.deepEqual(refused, ["invalid_selector"]);
  assert.deepEqual(errors, ["invalid_selector", "bad_frame"]);
  assert.equal(bad.active, false);
  sockets[0].drop();
  await until(() => sockets.length === 2, "a new socket");
  sockets[1].open();
  assert.deepEqual(sockets[1].sent.map((f) => f.subscription), ["good"]);
  bridge.close();
});

test("pings, and recycles a connection that stops answering", async () => {
  const { bridge, sockets } = connect({ pingInterval: 15, pongTimeout: 15 });
  const errors = [];
  bridge.on("error", (e) => errors.push(e.code));
  bridge.subscribe("stripe", "id = 'ch_1'", () => {}, { subscription: "s1" });
  sockets[0].open();
  await until(() => sockets[0].sent.some((f) => f.action === "ping"), "a ping");
  sockets[0].receive({ type: "pong" });
  // Now silence: the next ping goes unanswered.
  await until(() => sockets.length === 2, "a new socket after the ping timeout");
  assert.ok(errors.includes("ping_timeout"));
  assert.equal(sockets[0].readyState, 3);
  bridge.close();
});

test("close() stops for good", async () => {
  const { bridge, sockets } = connect();
  const closes = [];
  bridge.on("close", (e) => closes.push(e.code));
  sockets[0].open();
  bridge.close();
  await sleep(40);
  assert.equal(sockets.length, 1);
  assert.deepEqual(closes, []);
  assert.throws(() => bridge.subscribe("stripe", "id = 'x'", () => {}), /closed/);
});

test("relative URLs follow the page's scheme and host", () => {
  const sandbox = {
    location: { protocol: "https:", host: "shop.example" }, WebSocket: class {
      constructor(url) { sandbox.opened = url; }
      close() {}
    },
  };
  vm.createContext(sandbox);
  vm.runInContext(fs.readFileSync(SOURCE, "utf8"), sandbox);
  assert.equal(typeof sandbox.StripeBridge.connect, "function", "a global, without modules");
  sandbox.StripeBridge.connect().close();
  assert.equal(sandbox.opened, "wss://shop.example/ws/stripe/");
});

// -- followPayment (issue 17: a Checkout success page) ----------------------------------

function fakeFetch(answers) {
  const calls = [];
  const fetch = async (url) => {
    calls.push(url);
    const body = answers.length > 1 ? answers.shift() : answers[0];
    return { ok: body !== null, json: async () => body };
  };
  return { fetch, calls };
}

test("followPayment reads the status at once, then follows it live until final", async () => {
  const { fetch, calls } = fakeFetch([{ status: "processing" }]);
  globalThis.fetch = fetch;
  try {
    const { bridge, sockets } = connect();
    const seen = [];
    const done = bridge.followPayment("cs_test_1", {
      pollUrl: "/api/transactions/",
      onStatus: (status, source) => seen.push(`${status}/${source}`),
    });
    await until(() => seen.length === 1, "the first poll");
    assert.deepEqual(calls, ["/api/transactions/cs_test_1"]);
    sockets[0].open();
    const frame = sockets[0].sent[0];
    assert.equal(frame.selector, "id = 'cs_test_1'");
    assert.equal(frame.replay, "latest");
    sockets[0].receive(message(frame.subscription, "evt_1", "processing", true));
    sockets[0].receive(message(frame.subscription, "evt_2", "succeeded"));
    assert.equal(await done, "succeeded");
    assert.deepEqual(seen, ["processing/poll", "succeeded/socket"]);
    assert.deepEqual(sockets[0].sent[1], { action: "unsubscribe", subscription: frame.subscription });
    bridge.close();
  } finally {
    delete globalThis.fetch;
  }
});

test("followPayment polls while the socket is down, and stops when final", async () => {
  const { fetch, calls } = fakeFetch([null, { status: "processing" }, { status: "failed" }]);
  globalThis.fetch = fetch;
  try {
    const { bridge, sockets } = connect({ minDelay: 5000 });
    const done = bridge.followPayment("pi_2", { pollUrl: "/t/", pollInterval: 5 });
    sockets[0].drop();
    assert.equal(await done, "failed");
    const polls = calls.length;
    await sleep(30);
    assert.equal(calls.length, polls, "no poll after the final status");
    assert.ok(polls >= 3);
    bridge.close();
  } finally {
    delete globalThis.fetch;
  }
});

test("followPayment refuses what is not a payment id (no selector injection)", async () => {
  const { bridge } = connect();
  await assert.rejects(bridge.followPayment("x' OR id IS NOT NULL OR id = 'y"), /not a payment id/);
  bridge.close();
});

// -- exact resume and Server-Sent Events ---------------------------------------------------

function fakeSources() {
  const sources = [];
  class FakeEventSource {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.listeners = {};
      sources.push(this);
    }
    addEventListener(type, callback) {
      (this.listeners[type] = this.listeners[type] || []).push(callback);
    }
    close() {
      this.readyState = 2;
    }
    // -- driven by the tests --
    open() {
      this.readyState = 1;
      this.onopen && this.onopen({});
    }
    emit(frame) {
      for (const cb of this.listeners[frame.type] || []) cb({ data: JSON.stringify(frame) });
    }
    fail(gaveUp) {
      this.readyState = gaveUp ? 2 : 0;
      for (const cb of this.listeners.error || []) cb({});
    }
    params() {
      return new URL(this.url).searchParams;
    }
  }
  return { FakeEventSource, sources };
}

function withCursor(frame, cursor) {
  return Object.assign(frame, { cursor: String(cursor) });
}

test("re-subscribes after a reconnect from the last message's cursor", async () => {
  const { bridge, sockets } = connect({ replay: "none" });
  bridge.subscribe("stripe", "id = 'ch_1'", () => {}, { subscription: "s1" });
  sockets[0].open();
  sockets[0].receive({ type: "subscribed", subscription: "s1" });
  sockets[0].receive(withCursor(message("s1", "evt_1", "pending"), 41));
  sockets[0].receive(withCursor(message("s1", "evt_2", "succeeded"), 42));
  sockets[0].drop();
  await until(() => sockets.length === 2, "a reconnect");
  sockets[1].open();
  assert.equal(sockets[1].sent[0].since, "42");
  assert.equal(sockets[1].sent[0].replay, "latest");
  bridge.close();
});

test("falls back to Server-Sent Events when the websocket cannot open, resuming", async () => {
  const fake = fakeSources();
  const { bridge, sockets } = connect({
    replay: "all", eventsUrl: "http://example.test/api/events", EventSource: fake.FakeEventSource,
  });
  const got = [];
  const fallbacks = [];
  bridge.on("fallback", (detail) => fallbacks.push(detail.transport));
  bridge.subscribe("stripe", "id = 'ch_1'", (m) => got.push([m.subscription, m.cursor]),
    { subscription: "s1", since: "7" });
  sockets[0].drop(1006); // the upgrade was refused: it never opened
  await until(() => fake.sources.length === 1, "an EventSource");
  assert.deepEqual(fallbacks, ["sse"]);
  assert.equal(bridge.transport, "sse");
  const source = fake.sources[0];
  assert.equal(source.params().get("selector"), "id = 'ch_1'");
  assert.equal(source.params().get("replay"), "all");
  assert.equal(source.params().get("last_event_id"), "7");
  source.open();
  source.emit({ type: "subscribed", subscription: "default", recovered: true });
  source.emit(withCursor(message("default", "evt_8", "succeeded", true), 8));
  source.emit(withCursor(message("default", "evt_8", "succeeded", true), 8)); // repeat
  assert.deepEqual(got, [["s1", "8"]]);
  // The browser gave up on the stream (a 429): reopened later from the cursor.
  source.fail(true);
  await until(() => fake.sources.length === 2, "a reopened EventSource");
  assert.equal(fake.sources[1].params().get("last_event_id"), "8");
  assert.equal(fake.sources[1].params().get("replay"), "all"); // 'all' stays 'all'
  assert.equal(fake.sources[1].params().get("since"), null);
  bridge.close();
  assert.equal(fake.sources[1].readyState, 2);
});

test("a websocket that opened once does not fall back", async () => {
  const fake = fakeSources();
  const { bridge, sockets } = connect({
    eventsUrl: "http://example.test/api/events", EventSource: fake.FakeEventSource,
  });
  sockets[0].open();
  sockets[0].drop();
  await until(() => sockets.length === 2, "a websocket reconnect");
  assert.equal(fake.sources.length, 0);
  bridge.close();
});

test("transport 'sse' streams each subscription; a refusal closes its stream", async () => {
  const fake = fakeSources();
  const { bridge, sockets } = connect({
    transport: "sse", eventsUrl: "http://example.test/api/events", EventSource: fake.FakeEventSource,
  });
  const errors = [];
  const a = bridge.subscribe("stripe", "id = 'ch_1'", () => {}, { onError: (e) => errors.push(e.code) });
  bridge.subscribe("stripe/ch_2", null, () => {});
  assert.equal(sockets.length, 0);
  assert.equal(fake.sources.length, 2);
  assert.equal(fake.sources[1].params().get("channel"), "stripe/ch_2");
  fake.sources[0].emit({ type: "error", code: "forbidden", message: "no", subscription: "default" });
  assert.deepEqual(errors, ["forbidden"]);
  assert.equal(fake.sources[0].readyState, 2);
  assert.equal(a.active, false);
  bridge.close();
  assert.equal(fake.sources[1].readyState, 2);
});
