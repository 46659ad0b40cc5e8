/*!
 * stripe-bridge.js: the browser client of django-stripe-bridge's real-time channel.
 *
 * No build step, no dependencies. Load it with a <script> tag and use the global
 * `StripeBridge` (CommonJS `require()` works too):
 *
 *   const bridge = StripeBridge.connect("/ws/stripe/");
 *   const sub = bridge.subscribe("stripe", "id = 'ch_1'", (message) => {
 *     console.log(message.headers.status);            // "succeeded", "refunded", ...
 *   });
 *   bridge.on("error", (error) => console.warn(error.code, error.message));
 *   sub.unsubscribe();
 *   bridge.close();
 *
 * To follow one payment until it settles (a Checkout success page, say), by whatever id
 * the page holds (cs_…, pi_…, ch_…):
 *
 *   bridge.followPayment("cs_test_…", {
 *     pollUrl: "/api/services/Stripe/transactions/",   // the fallback without websockets
 *     onStatus: (status) => render(status),            // "processing", "succeeded", ...
 *   }).then((finalStatus) => ...);
 *
 * The connection is kept alive with pings and re-opened with exponential backoff and
 * jitter when it drops. Every subscription is then made again from the cursor of the
 * last message it got (exact resume; replay "latest", or "all" when that was asked for,
 * when it has none or the server cannot resume), and events already delivered are
 * dropped by event_id, so no status is missed and none is seen twice.
 *
 * When the websocket cannot open (a proxy that strips Upgrade), the client falls back to
 * Server-Sent Events, one EventSource per subscription, resuming from the same cursors:
 *
 *   StripeBridge.connect("/ws/stripe/", {eventsUrl: "/api/services/Stripe/events"});
 *   StripeBridge.connect("/ws/stripe/", {eventsUrl: "…/events", transport: "sse"});
 *
 * The protocol is described in docs/websocket-protocol.md.
 */
(function (root, factory) {
  "use strict";
  const api = factory();
  if (typeof module === "object" && module && module.exports) {
    module.exports = api;
  }
  if (root) {
    root.StripeBridge = api;
  }
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
  "use strict";

  const DEFAULTS = {
    // Replay for the first subscribe of each subscription: "latest", "all", "none", or
    // null for the server's REPLAY setting. Re-subscribes after a reconnect use "latest"
    // (or "all" when the subscription asked for "all").
    replay: null,
    pingInterval: 25000, // ms between pings; 0 disables them
    pongTimeout: 10000, // ms without any frame after a ping before the socket is recycled
    minDelay: 500, // first reconnect delay (ms), doubled on each failure...
    maxDelay: 30000, // ...up to this
    // ms a connection must stay open before the delay starts again from minDelay. A server
    // that answers and then closes at once (its database is down: replay fails) counts as
    // a failure, so clients back off instead of reconnecting twice a second.
    stableAfter: 10000,
    rememberEvents: 1000, // event ids remembered per subscription to drop repeats
    WebSocket: null, // constructor to use (defaults to the global WebSocket)
    // "auto": websocket, and Server-Sent Events when the websocket cannot open (needs
    // eventsUrl); "websocket" or "sse" for one of them only.
    transport: "auto",
    eventsUrl: null, // the app's events URL ("<prefix>/events"); null: no SSE
    EventSource: null, // constructor to use (defaults to the global EventSource)
  };

  // Codes after which a subscription is gone (the server refused it).
  const REFUSALS = [
    "invalid_selector",
    "forbidden",
    "bad_frame",
    "too_many_subscriptions",
    "unknown_channel",
    "subscription_exists",
    "limit_exceeded",
  ];

  // Statuses after which the customer has nothing left to wait for.
  const FINAL_STATUSES = [
    "succeeded",
    "requires_capture",
    "failed",
    "canceled",
    "expired",
    "partially_refunded",
    "refunded",
    "disputed",
    "dispute_won",
    "dispute_lost",
  ];
  const PAYMENT_ID = /^[A-Za-z0-9_]{1,255}$/;

  function resolveUrl(url) {
    const loc = typeof location !== "undefined" ? location : null;
    if (!url) url = "/ws/stripe/";
    if (/^wss?:\/\//i.test(url)) return url;
    if (/^https?:\/\//i.test(url)) return url.replace(/^http/i, "ws");
    if (!loc) throw new Error("StripeBridge: give an absolute ws:// or wss:// URL");
    const scheme = loc.protocol === "https:" ? "wss://" : "ws://";
    return scheme + loc.host + (url.charAt(0) === "/" ? url : "/" + url);
  }

  function resolveHttpUrl(url) {
    if (/^https?:\/\//i.test(url)) return url;
    if (/^wss?:\/\//i.test(url)) return url.replace(/^ws/i, "http");
    const loc = typeof location !== "undefined" ? location : null;
    if (!loc) throw new Error("StripeBridge: give an absolute http:// or https:// eventsUrl");
    return loc.protocol + "//" + loc.host + (url.charAt(0) === "/" ? url : "/" + url);
  }

  /** Seconds-free helper: the delay (ms) before reconnect number `attempt` (0-based). */
  function backoffDelay(attempt, minDelay, maxDelay, random) {
    const ceiling = Math.min(maxDelay, minDelay * Math.pow(2, attempt));
    return ceiling / 2 + (random || Math.random)() * (ceiling / 2);
  }

  class RecentIds {
    constructor(size) {
      this.size = size;
      this.ids = new Set();
    }
    /** Remember `id`; false when it was already there. */
    add(id) {
      if (this.ids.has(id)) return false;
      this.ids.add(id);
      if (this.ids.size > this.size) this.ids.delete(this.ids.values().next().value);
      return true;
    }
  }

  class Subscription {
    constructor(bridge, name, channel, selector, onMessage, options) {
      this.bridge = bridge;
      this.name = name;
      this.channel = channel;
      this.selector = selector;
      this.onMessage = onMessage;
      this.onError = options.onError || null;
      this.replay = options.replay !== undefined ? options.replay : bridge.options.replay;
      this.subscribedOnce = false;
      this.active = true;
      this.cursor = options.since || null; // the last message's cursor: resume after it
      this.source = null; // its EventSource, over Server-Sent Events
      this.seen = new RecentIds(bridge.options.rememberEvents);
    }

    /** Stop receiving; safe to call more than once. */
    unsubscribe() {
      if (!this.active) return;
      this.active = false;
      this.bridge._forget(this, true);
    }

    _replayMode() {
      if (this.subscribedOnce) return this.replay === "all" ? "all" : "latest";
      return this.replay;
    }

    _frame() {
      const frame = { action: "subscribe", subscription: this.name, channel: this.channel };
      if (this.selector !== null && this.selector !== undefined) frame.selector = this.selector;
      const replay = this._replayMode();
      if (replay) frame.replay = replay;
      if (this.cursor) frame.since = this.cursor;
      return frame;
    }

    _query() {
      const params = new URLSearchParams();
      params.set("channel", this.channel);
      if (this.selector !== null && this.selector !== undefined) params.set("selector", this.selector);
      const replay = this._replayMode();
      if (replay) params.set("replay", replay);
      if (this.cursor) params.set("last_event_id", this.cursor);
      return params.toString();
    }
  }

  class Bridge {
    constructor(url, options) {
      this.url = resolveUrl(url);
      this.options = Object.assign({}, DEFAULTS, options || {});
      this.subscriptions = new Map();
      this.listeners = {};
      this.socket = null;
      this.attempt = 0;
      this.closed = false;
      this.counter = 0;
      this._reconnectTimer = null;
      this._openedAt = null;
      this._pingTimer = null;
      this._pongTimer = null;
      this._everOpened = false;
      // The transport in use: "websocket" until it falls back to "sse".
      this.transport = this.options.transport === "sse" ? "sse" : "websocket";
      if (this.transport === "sse" && !this.options.eventsUrl) {
        throw new Error("StripeBridge: transport 'sse' needs the eventsUrl option");
      }
      this._open();
    }

    // -- public API --------------------------------------------------------------------

    /**
     * Subscribe to `channel` ("stripe" or "stripe/<transaction id>") with a selector.
     * `onMessage(message)` gets each message frame ({headers, data, replayed, ...}).
     * Options: `replay`, `subscription` (a name), `onError(errorFrame)`.
     */
    subscribe(channel, selector, onMessage, options) {
      if (this.closed) throw new Error("StripeBridge: this connection is closed");
      options = options || {};
      const name = options.subscription || "js-" + ++this.counter;
      if (this.subscriptions.has(name)) {
        throw new Error("StripeBridge: subscription " + name + " exists");
      }
      const sub = new Subscription(
        this, name, channel || "stripe", selector, onMessage, options
      );
      this.subscriptions.set(name, sub);
      this._sendSubscribe(sub);
      return sub;
    }

    /**
     * Follow one payment by whatever id the page holds (cs_…, pi_…, ch_…) until its status
     * is final; the promise resolves with that status (and has `stop()`).
     * Options: `onStatus(status, source)` for every status seen ("socket" or "poll"),
     * `pollUrl` (e.g. "/api/services/Stripe/transactions/": read at once, then every
     * `pollInterval` ms while the socket is down), `final` (statuses that end the wait).
     */
    followPayment(paymentId, options) {
      options = options || {};
      if (!PAYMENT_ID.test(String(paymentId))) {
        return Promise.reject(new Error("StripeBridge: not a payment id: " + paymentId));
      }
      const final = options.final || FINAL_STATUSES;
      const interval = options.pollInterval || 3000;
      let done = false;
      let last = null;
      let timer = null;
      let sub = null;
      let settle;
      const promise = new Promise((resolve) => { settle = resolve; });
      const stop = () => {
        done = true;
        if (sub) sub.unsubscribe();
        if (timer) clearTimeout(timer);
        this.off("open", onOpen);
        this.off("close", onDown);
      };
      const report = (status, source) => {
        if (done || !status) return;
        if (status !== last) {
          last = status;
          if (options.onStatus) options.onStatus(status, source);
        }
        if (final.indexOf(status) !== -1) {
          stop();
          settle(status);
        }
      };
      const poll = () => {
        timer = null;
        if (done || !options.pollUrl || typeof fetch === "undefined") return;
        fetch(options.pollUrl + encodeURIComponent(paymentId), {
          headers: { Accept: "application/json" },
          credentials: "same-origin",
        })
          .then((response) => (response.ok ? response.json() : null))
          .then((body) => { if (body) report(body.status, "poll"); })
          .catch(() => {})
          .then(() => {
            if (!done && !this._isOpen()) timer = setTimeout(poll, interval);
          });
      };
      const onDown = () => { if (!timer && !done) timer = setTimeout(poll, interval); };
      const onOpen = () => { if (timer) { clearTimeout(timer); timer = null; } };
      this.on("close", onDown);
      this.on("open", onOpen);
      sub = this.subscribe("stripe", "id = '" + paymentId + "'", (message) => {
        report(message.headers && message.headers.status, "socket");
      }, { replay: "latest" });
      poll();
      promise.stop = stop;
      return promise;
    }

    /** Listen to "open", "close", "reconnecting", "subscribed", "message", "error". */
    on(type, callback) {
      (this.listeners[type] = this.listeners[type] || []).push(callback);
      return this;
    }

    off(type, callback) {
      this.listeners[type] = (this.listeners[type] || []).filter((cb) => cb !== callback);
      return this;
    }

    /** Close for good: no reconnect. */
    close() {
      this.closed = true;
      this._clearTimers();
      if (this._reconnectTimer) clearTimeout(this._reconnectTimer);
      this._reconnectTimer = null;
      if (this.socket) this.socket.close(1000);
      this.socket = null;
      for (const sub of this.subscriptions.values()) this._closeSource(sub);
    }

    // -- plumbing ----------------------------------------------------------------------

    _emit(type, detail) {
      for (const callback of (this.listeners[type] || []).slice()) {
        try {
          callback(detail);
        } catch (error) {
          setTimeout(() => { throw error; }, 0); // report, do not break the client
        }
      }
    }

    _isOpen() {
      return this.socket !== null && this.socket.readyState === 1;
    }

    _send(frame) {
      if (this._isOpen()) this.socket.send(JSON.stringify(frame));
    }

    _sendSubscribe(sub) {
      if (this.transport === "sse") this._openSource(sub);
      else this._send(sub._frame());
    }

    _forget(sub, tellServer) {
      if (this.subscriptions.get(sub.name) === sub) this.subscriptions.delete(sub.name);
      this._closeSource(sub);
      if (tellServer && this.transport === "websocket") {
        this._send({ action: "unsubscribe", subscription: sub.name });
      }
    }

    _open() {
      if (this.transport === "sse") {
        for (const sub of this.subscriptions.values()) this._openSource(sub);
        return;
      }
      const Socket = this.options.WebSocket || (typeof WebSocket !== "undefined" ? WebSocket : null);
      if (!Socket) throw new Error("StripeBridge: no WebSocket implementation");
      let socket;
      try {
        socket = new Socket(this.url);
      } catch (error) {
        this._emit("error", { code: "connect_failed", message: String(error) });
        this._scheduleReconnect();
        return;
      }
      this.socket = socket;
      socket.onopen = () => {
        if (socket !== this.socket) return;
        this._openedAt = Date.now();
        this._everOpened = true;
        this._emit("open", { url: this.url });
        for (const sub of this.subscriptions.values()) this._sendSubscribe(sub);
        this._startPing();
      };
      socket.onmessage = (event) => {
        if (socket !== this.socket) return;
        this._onFrame(event.data);
      };
      socket.onerror = () => {
        if (socket !== this.socket) return;
        this._emit("error", { code: "socket_error", message: "websocket error" });
      };
      socket.onclose = (event) => {
        if (socket !== this.socket) return;
        this.socket = null;
        this._clearTimers();
        this._emit("close", { code: event && event.code, reason: event && event.reason });
        if (this.closed) return;
        if (!this._everOpened && this._canFallBack()) this._fallBack();
        else this._scheduleReconnect();
      };
    }

    // -- Server-Sent Events --------------------------------------------------------------

    _eventSource() {
      return this.options.EventSource || (typeof EventSource !== "undefined" ? EventSource : null);
    }

    _canFallBack() {
      return this.options.transport === "auto" && !!this.options.eventsUrl && !!this._eventSource();
    }

    _fallBack() {
      // The websocket never opened: a proxy on the way refuses it. Streams pass.
      this.transport = "sse";
      this._emit("fallback", { transport: "sse" });
      this._open();
    }

    _openSource(sub) {
      const Source = this._eventSource();
      if (!Source) throw new Error("StripeBridge: no EventSource implementation");
      this._closeSource(sub);
      const url = resolveHttpUrl(this.options.eventsUrl) + "?" + sub._query();
      const source = new Source(url);
      sub.source = source;
      const current = () => sub.source === source && sub.active && !this.closed;
      const onFrame = (event) => {
        if (current()) this._onFrame(event.data, sub.name);
      };
      source.onopen = () => {
        if (!current()) return;
        this._openedAt = Date.now();
        this._emit("open", { url: url, transport: "sse" });
      };
      source.addEventListener("subscribed", onFrame);
      source.addEventListener("message", onFrame);
      source.addEventListener("error", (event) => {
        if (!current()) return;
        if (event && typeof event.data === "string") {
          onFrame(event); // the server's error event: the stream ends after it
          return;
        }
        // A network error: the browser reconnects by itself (sending Last-Event-ID)
        // unless it gave up (a refusal such as 429, 403): then back off and reopen.
        if (source.readyState === 2) {
          this._closeSource(sub);
          this._emit("close", { code: null, reason: "stream closed", transport: "sse" });
          this._reopenSourceLater(sub);
        }
      });
    }

    _reopenSourceLater(sub) {
      const delay = backoffDelay(this.attempt, this.options.minDelay, this.options.maxDelay);
      this.attempt += 1;
      this._emit("reconnecting", { attempt: this.attempt, delay: delay, transport: "sse" });
      setTimeout(() => {
        if (!this.closed && sub.active && this.subscriptions.get(sub.name) === sub) {
          this._openSource(sub);
        }
      }, delay);
    }

    _closeSource(sub) {
      if (sub.source) {
        const source = sub.source;
        sub.source = null;
        try { source.close(); } catch (error) { /* already closed */ }
      }
    }

    _onFrame(text, streamOf) {
      let frame;
      try {
        frame = JSON.parse(text);
      } catch (error) {
        return;
      }
      if (!frame || typeof frame !== "object") return;
      // A stream carries one subscription, which the server calls "default".
      if (streamOf !== undefined) frame.subscription = streamOf;
      this._alive();
      const sub = frame.subscription != null ? this.subscriptions.get(frame.subscription) : null;
      switch (frame.type) {
        case "subscribed":
          if (sub) sub.subscribedOnce = true;
          this._emit("subscribed", frame);
          break;
        case "message": {
          if (!sub || !sub.active) return;
          if (frame.cursor) sub.cursor = frame.cursor;
          const eventId = frame.headers && frame.headers.event_id;
          if (eventId && !sub.seen.add(eventId)) return; // already delivered
          this._emit("message", frame);
          if (sub.onMessage) sub.onMessage(frame);
          break;
        }
        case "error":
          if (sub && REFUSALS.indexOf(frame.code) !== -1) {
            sub.active = false;
            this._forget(sub, false);
            if (sub.onError) sub.onError(frame);
          }
          this._emit("error", frame);
          break;
        default:
          break;
      }
    }

    _startPing() {
      const interval = this.options.pingInterval;
      if (!interval) return;
      this._pingTimer = setInterval(() => {
        this._send({ action: "ping" });
        if (!this._pongTimer) {
          this._pongTimer = setTimeout(() => {
            // No answer: the connection is dead even if the browser has not noticed.
            this._pongTimer = null;
            this._emit("error", { code: "ping_timeout", message: "no answer to ping" });
            if (this.socket) {
              const dead = this.socket;
              this.socket = null;
              this._clearTimers();
              try { dead.close(4000); } catch (error) { /* already closing */ }
              this._emit("close", { code: 4000, reason: "ping timeout" });
              if (!this.closed) this._scheduleReconnect();
            }
          }, this.options.pongTimeout);
        }
      }, interval);
    }

    _alive() {
      if (this._pongTimer) clearTimeout(this._pongTimer);
      this._pongTimer = null;
    }

    _clearTimers() {
      if (this._pingTimer) clearInterval(this._pingTimer);
      if (this._pongTimer) clearTimeout(this._pongTimer);
      this._pingTimer = null;
      this._pongTimer = null;
    }

    _scheduleReconnect() {
      if (this.closed || this._reconnectTimer) return;
      const opened = this._openedAt;
      this._openedAt = null;
      if (opened !== null && Date.now() - opened >= this.options.stableAfter) this.attempt = 0;
      const delay = backoffDelay(this.attempt, this.options.minDelay, this.options.maxDelay);
      this.attempt += 1;
      this._emit("reconnecting", { attempt: this.attempt, delay: delay });
      this._reconnectTimer = setTimeout(() => {
        this._reconnectTimer = null;
        if (!this.closed) this._open();
      }, delay);
    }
  }

  return {
    /** Open a connection: `StripeBridge.connect("/ws/stripe/", {replay: "latest"})`. */
    connect(url, options) {
      return new Bridge(url, options);
    },
    Bridge: Bridge,
    backoffDelay: backoffDelay,
    FINAL_STATUSES: FINAL_STATUSES,
    version: "0.1.0",
  };
});
