// The demo page: tokenize the card at the Stripe API base, charge it through Django, and
// show the status as the webhook's events arrive over the websocket (or, where a proxy
// refuses websockets, over Server-Sent Events).
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("demo-config").textContent);
  const $ = (id) => document.getElementById(id);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const bridge = StripeBridge.connect(`${scheme}//${location.host}/ws/stripe/`, {
    eventsUrl: config.eventsUrl,
  });
  let subscription = null;
  let stripeJs = null;
  let cardElement = null;

  if (!config.offline && window.Stripe && config.publishableKey) {
    stripeJs = window.Stripe(config.publishableKey);
    cardElement = stripeJs.elements().create("card");
    cardElement.mount("#card-element");
  }

  // Amounts travel in the currency's smallest unit (1050 = 10.50 USD, 500 = 500 JPY);
  // people type and read them in units.
  function places(currency) {
    const known = config.decimals[currency];
    return known === undefined ? 2 : known;
  }

  function toMinorUnits(text, currency) {
    const digits = places(currency);
    const match = /^\s*(\d+)(?:[.,](\d*))?\s*$/.exec(text);
    if (!match) throw new Error(`"${text}" is not an amount`);
    const fraction = match[2] || "";
    if (fraction.length > digits) {
      throw new Error(`${currency.toUpperCase()} amounts have ${digits} decimals at most`);
    }
    return Number(match[1] + fraction.padEnd(digits, "0"));
  }

  function formatAmount(amount, currency) {
    if (typeof amount !== "number" || !currency) return "—";
    const digits = places(currency);
    const text = (amount / 10 ** digits).toFixed(digits);
    return `${text} ${currency.toUpperCase()}`;
  }

  function updatePayButton() {
    const currency = $("currency").value;
    let label;
    try {
      label = formatAmount(toMinorUnits($("amount").value, currency), currency);
    } catch (error) {
      label = currency.toUpperCase();
    }
    $("pay-amount").textContent = label;
  }
  $("amount").addEventListener("input", updatePayButton);
  $("currency").addEventListener("change", () => {
    const currency = $("currency").value;
    const units = Number($("amount").value.replace(",", "."));
    if ($("amount").value && Number.isFinite(units)) {
      $("amount").value = units.toFixed(places(currency));
    }
    updatePayButton();
  });
  updatePayButton();

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
      const amount = formatAmount(message.headers.amount, message.headers.currency);
      log(`${message.headers.type} → ${message.headers.status}, ${amount}${replayed}`);
      if (message.headers.status) showStatus(message.headers.status);
      $("charged").textContent = amount;
    });
  }

  // Stripe Checkout: Django creates the session (the key stays on the server); the browser
  // goes to the payment page and comes back to /checkout/success, which follows it.
  $("pay-checkout").addEventListener("click", async () => {
    $("pay-checkout").disabled = true;
    try {
      const currency = $("currency").value;
      const amount = toMinorUnits($("amount").value, currency);
      const response = await fetch(config.checkoutUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": config.csrfToken },
        body: JSON.stringify({ amount, currency, name: "Demo payment" }),
      });
      const body = await response.json();
      if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
      log(`Checkout Session ${body.id}: going to the payment page`);
      location.assign(body.url);
    } catch (error) {
      log(`error: ${error.message}`);
      showStatus("error");
      $("pay-checkout").disabled = false;
    }
  });

  $("pay-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("pay").disabled = true;
    showStatus("charging…");
    try {
      const currency = $("currency").value;
      const amount = toMinorUnits($("amount").value, currency);
      $("charged").textContent = formatAmount(amount, currency);
      const token = await tokenize();
      log(`card tokenized as ${token}`);
      const response = await fetch(config.chargeUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRFToken": config.csrfToken },
        body: JSON.stringify({ token, amount, currency }),
      });
      const body = await response.json();
      if (response.ok) {
        log(`charge ${body.id}: ${body.status}, ${formatAmount(body.amount, body.currency)}`);
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
