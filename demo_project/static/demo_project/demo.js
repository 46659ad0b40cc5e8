// The demo page: tokenize the card at the Stripe API base, charge it through Django, and
// show the status as the webhook's events arrive over the websocket.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("demo-config").textContent);
  const $ = (id) => document.getElementById(id);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const bridge = StripeBridge.connect(`${scheme}//${location.host}/ws/stripe/`);
  let subscription = null;
  let stripeJs = null;
  let cardElement = null;

  if (!config.offline && window.Stripe && config.publishableKey) {
    stripeJs = window.Stripe(config.publishableKey);
    cardElement = stripeJs.elements().create("card");
    cardElement.mount("#card-element");
  }

  function log(text) {
    const item = document.createElement("li");
    item.textContent = `${new Date().toLocaleTimeString()} ${text}`;
    $("log").appendChild(item);
  }

  function showStatus(status) {
    $("status").textContent = status;
    $("status").dataset.status = status;
  }

  async function tokenize() {
    if (stripeJs) {
      const result = await stripeJs.createToken(cardElement);
      if (result.error) throw new Error(result.error.message);
      return result.token.id;
    }
    const [month, year] = $("card-exp").value.split("/").map((part) => part.trim());
    // As Stripe.js does: the publishable key travels in the form, so no preflight is needed.
    const body = new URLSearchParams({
      key: config.publishableKey,
      "card[number]": $("card-number").value.replace(/\s+/g, ""),
      "card[exp_month]": month,
      "card[exp_year]": year,
      "card[cvc]": $("card-cvc").value,
    });
    const response = await fetch(`${config.apiBase}/v1/tokens`, { method: "POST", body });
    const token = await response.json();
    if (!response.ok) throw new Error(token.error ? token.error.message : "tokenization failed");
    return token.id;
  }

  function follow(transactionId) {
    if (subscription) subscription.unsubscribe();
    $("transaction").textContent = transactionId;
    subscription = bridge.subscribe("stripe", `id = '${transactionId}'`, (message) => {
      const replayed = message.replayed ? " (replayed)" : "";
      log(`${message.headers.type} → ${message.headers.status}${replayed}`);
      if (message.headers.status) showStatus(message.headers.status);
    });
  }

  $("pay-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("pay").disabled = true;
    showStatus("charging…");
    try {
      const token = await tokenize();
      log(`card tokenized as ${token}`);
      const response = await fetch(config.chargeUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": config.csrfToken },
        body: JSON.stringify({ token, amount: Number($("amount").value) }),
      });
      const body = await response.json();
      if (response.ok) {
        log(`charge ${body.id}: ${body.status}`);
        showStatus(`${body.status} (waiting for webhook)`);
        follow(body.id);
      } else if (body.error && body.error.charge) {
        log(`declined: ${body.error.message}`);
        showStatus("declined (waiting for webhook)");
        follow(body.error.charge);
      } else {
        const message = body.error ? body.error.message : response.statusText;
        log(`error ${response.status}: ${message}`);
        showStatus("error");
      }
    } catch (error) {
      log(`error: ${error.message}`);
      showStatus("error");
    } finally {
      $("pay").disabled = false;
    }
  });
})();
