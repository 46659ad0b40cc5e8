// The Checkout success page: follow the session (whatever id the URL holds) until its
// payment is final, live over the websocket, polling transactions/<id> while it is down.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("checkout-config").textContent);
  const status = document.getElementById("status");
  const log = document.getElementById("log");
  const bridge = StripeBridge.connect("/ws/stripe/");

  function show(value, source) {
    status.textContent = value;
    status.dataset.status = value;
    const item = document.createElement("li");
    item.textContent = `${new Date().toLocaleTimeString()} ${value} (${source})`;
    log.appendChild(item);
  }

  bridge
    .followPayment(config.sessionId, { pollUrl: config.pollUrl, onStatus: show })
    .then((final) => {
      status.dataset.final = "true";
      bridge.close();
      return final;
    });
})();
