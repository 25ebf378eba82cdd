"use strict";

// The portal's connection to /ws/agent/ (contract section 5), kept on every portal page so
// that an agent who looks at their history stays present: the status switch, the reconnect
// banner, and the sound, notification and counter for new offers. A page that shows more (the
// workspace) subscribes to the frames through window.portal. Text that came from a customer,
// the bot or the server is only ever written with textContent, never parsed as HTML.

(() => {
  const HEARTBEAT_MS = 20000;
  const RETRY_FIRST_MS = 1000;
  const RETRY_MAX_MS = 30000;
  const CLOSE_UNAUTHENTICATED = 4401;
  const CLOSE_NOT_AN_AGENT = 4403;
  const SOUND_SETTING = "gig-dispatch.offer-sound";

  const STATUS_NOTES = {
    available: "You are available: new offers come to you.",
    away: "You are away: no new offers until you are available.",
    offline: "You are offline: no new offers.",
  };

  const root = document.getElementById("portal");
  const ui = {
    banner: document.getElementById("connection-banner"),
    error: document.getElementById("error"),
    name: document.getElementById("agent-name"),
    statusSwitch: document.getElementById("status-switch"),
    statusNote: document.getElementById("status-note"),
    badge: document.getElementById("offers-badge"),
    soundToggle: document.getElementById("sound-toggle"),
    notifyButton: document.getElementById("notify-button"),
  };
  const baseTitle = document.title;
  const languageNames =
    typeof Intl.DisplayNames === "function"
      ? new Intl.DisplayNames(["en"], { type: "language" })
      : null;

  const frameListeners = new Map();
  const connectionListeners = [];
  // Pending offers by id, for the counter, the title and closing their notifications.
  const offers = new Map();
  const notifications = new Map();
  let socket = null;
  let retryDelay = RETRY_FIRST_MS;
  let status = null;
  let greeted = false;
  let audio = null;

  function languageLabel(code) {
    const name = languageNames ? languageNames.of(code) : null;
    return name && name !== code ? `${name} (${code})` : code;
  }

  function humanize(slug) {
    return slug ? slug.replaceAll("_", " ") : "";
  }

  function customerLabel(customer) {
    return customer.name || "A customer";
  }

  function showMessage(element, text) {
    element.textContent = text;
    element.hidden = !text;
  }

  function isConnected() {
    return socket !== null && socket.readyState === WebSocket.OPEN;
  }

  function send(frame) {
    if (!isConnected()) {
      showMessage(ui.error, "Not connected: wait until the connection is back.");
      return false;
    }
    showMessage(ui.error, "");
    socket.send(JSON.stringify(frame));
    return true;
  }

  function on(type, handler) {
    if (!frameListeners.has(type)) {
      frameListeners.set(type, []);
    }
    frameListeners.get(type).push(handler);
  }

  function setConnected(connected) {
    ui.statusSwitch.disabled = !connected;
    connectionListeners.forEach((handler) => handler(connected));
  }

  // Sound: a short two-note chime made on the spot, so there is no audio file to load.
  function unlockAudio() {
    if (audio === null && typeof AudioContext === "function") {
      audio = new AudioContext();
    }
    if (audio !== null && audio.state === "suspended") {
      audio.resume();
    }
  }

  function chime() {
    if (!ui.soundToggle.checked) {
      return;
    }
    unlockAudio();
    if (audio === null) {
      return;
    }
    const start = audio.currentTime;
    const gain = audio.createGain();
    gain.gain.setValueAtTime(0.0001, start);
    gain.gain.exponentialRampToValueAtTime(0.25, start + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.45);
    gain.connect(audio.destination);
    const tone = audio.createOscillator();
    tone.type = "sine";
    tone.frequency.setValueAtTime(880, start);
    tone.frequency.setValueAtTime(1320, start + 0.15);
    tone.connect(gain);
    tone.start(start);
    tone.stop(start + 0.5);
  }

  function refreshNotifyButton() {
    ui.notifyButton.hidden =
      typeof Notification !== "function" || Notification.permission !== "default";
  }

  function notify(offer) {
    if (typeof Notification !== "function" || Notification.permission !== "granted") {
      return;
    }
    const ticket = offer.ticket;
    const notification = new Notification(`New offer: ${customerLabel(ticket.customer)}`, {
      body: [languageLabel(ticket.language), `${ticket.priority} priority`, humanize(ticket.reason)]
        .filter(Boolean)
        .join(" · "),
      tag: offer.id,
    });
    notification.addEventListener("click", () => {
      window.focus();
      notification.close();
      if (!document.getElementById("workspace")) {
        window.location.assign(root.dataset.workspaceUrl);
      }
    });
    notifications.set(offer.id, notification);
  }

  function alertNewOffer(offer) {
    chime();
    notify(offer);
  }

  function forgetOffer(offerId) {
    offers.delete(offerId);
    const notification = notifications.get(offerId);
    if (notification) {
      notification.close();
      notifications.delete(offerId);
    }
    refreshCounter();
  }

  function refreshCounter() {
    ui.badge.textContent = offers.size ? String(offers.size) : "";
    ui.badge.hidden = offers.size === 0;
    // An agent working in another tab sees a waiting offer in this tab's title.
    document.title = offers.size ? `(${offers.size}) ${baseTitle}` : baseTitle;
  }

  function applyStatus(value) {
    status = value;
    for (const radio of ui.statusSwitch.querySelectorAll("input[name=status]")) {
      radio.checked = radio.value === value;
    }
    ui.statusNote.textContent = STATUS_NOTES[value] || "";
  }

  // The agent's whole state, from a `hello` or read again over HTTP.
  function applyState(state) {
    ui.name.textContent = state.agent.display_name;
    applyStatus(state.agent.status);
    const known = new Set(offers.keys());
    for (const offerId of known) {
      if (!state.offers.some((offer) => offer.id === offerId)) {
        forgetOffer(offerId);
      }
    }
    for (const offer of state.offers) {
      offers.set(offer.id, offer);
      // Offers made while the connection was down are news; those on a fresh page are not.
      if (greeted && !known.has(offer.id)) {
        alertNewOffer(offer);
      }
    }
    greeted = true;
    refreshCounter();
  }

  async function getJson(url) {
    const response = await fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (!response.ok) {
      throw new Error(`The server answered ${response.status}.`);
    }
    return response.json();
  }

  // Frames are delivered at most once: a page that missed one reads the state over HTTP, and
  // it reaches the page's listeners as a `hello` would. One read at a time.
  let resyncing = null;
  function resync() {
    if (resyncing === null) {
      resyncing = Promise.all([
        getJson(root.dataset.meApi),
        getJson(root.dataset.offersApi),
        getJson(root.dataset.ticketsApi),
      ])
        .then(([agent, pendingOffers, tickets]) => {
          const state = { type: "hello", agent, offers: pendingOffers, tickets };
          applyState(state);
          (frameListeners.get("hello") || []).forEach((handler) => handler(state));
        })
        .finally(() => {
          resyncing = null;
        });
    }
    return resyncing;
  }

  function sameIds(ids, known) {
    return ids.length === known.size && ids.every((id) => known.has(id));
  }

  const ownHandlers = {
    hello(frame) {
      retryDelay = RETRY_FIRST_MS;
      ui.banner.hidden = true;
      applyState(frame);
      setConnected(true);
    },
    "heartbeat.ack"(frame) {
      // The answer names the pending offers: one this page never heard of, or still shows
      // after it was withdrawn, means a frame was lost on the way.
      if (!sameIds(frame.offers, new Set(offers.keys()))) {
        resync().catch(() => {});
      }
    },
    status(frame) {
      applyStatus(frame.status);
    },
    "offer.created"(frame) {
      if (!offers.has(frame.offer.id)) {
        offers.set(frame.offer.id, frame.offer);
        alertNewOffer(frame.offer);
        refreshCounter();
      }
    },
    "offer.revoked"(frame) {
      forgetOffer(frame.offer_id);
    },
    "ticket.assigned"(frame) {
      for (const offer of [...offers.values()]) {
        if (offer.ticket.id === frame.ticket.id) {
          forgetOffer(offer.id);
        }
      }
    },
    error(frame) {
      showMessage(ui.error, frame.detail);
      applyStatus(status);
    },
  };

  function handleFrame(frame) {
    const own = ownHandlers[frame.type];
    if (own) {
      own(frame);
    }
    (frameListeners.get(frame.type) || []).forEach((handler) => handler(frame));
  }

  function socketUrl() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${window.location.host}${root.dataset.socketPath}`;
  }

  function connect() {
    socket = new WebSocket(socketUrl());
    socket.addEventListener("message", (event) => handleFrame(JSON.parse(event.data)));
    socket.addEventListener("close", (event) => {
      setConnected(false);
      ui.banner.hidden = false;
      if (event.code === CLOSE_UNAUTHENTICATED) {
        ui.banner.textContent = "Your session has ended. Taking you to the log-in page…";
        const next = encodeURIComponent(window.location.pathname);
        window.location.assign(`${root.dataset.loginUrl}?next=${next}`);
        return;
      }
      if (event.code === CLOSE_NOT_AN_AGENT) {
        // Reconnecting cannot help: the account itself is not (or no longer) an active agent.
        ui.banner.textContent =
          "This account is not an active agent any more. Please contact a coordinator.";
        return;
      }
      ui.banner.textContent = "Connection lost. Reconnecting…";
      // Jitter, so that a server restart is not met by every agent's browser in the same second.
      const delay = retryDelay / 2 + Math.random() * (retryDelay / 2);
      retryDelay = Math.min(retryDelay * 2, RETRY_MAX_MS);
      window.setTimeout(connect, delay);
    });
  }

  function startHeartbeat() {
    const heartbeat = new Worker(root.dataset.heartbeatWorker);
    heartbeat.addEventListener("message", () => {
      if (isConnected()) {
        socket.send(JSON.stringify({ type: "heartbeat" }));
      }
    });
    heartbeat.postMessage(HEARTBEAT_MS);
  }

  ui.statusSwitch.addEventListener("change", (event) => {
    ui.statusNote.textContent = "Saving…";
    if (!send({ type: "status.set", status: event.target.value })) {
      applyStatus(status);
    }
  });

  ui.soundToggle.checked = window.localStorage.getItem(SOUND_SETTING) !== "off";
  ui.soundToggle.addEventListener("change", () => {
    window.localStorage.setItem(SOUND_SETTING, ui.soundToggle.checked ? "on" : "off");
  });
  // Browsers let a page play sound only once the person has used it.
  for (const type of ["pointerdown", "keydown"]) {
    document.addEventListener(type, unlockAudio, { passive: true });
  }
  refreshNotifyButton();
  ui.notifyButton.addEventListener("click", async () => {
    await Notification.requestPermission();
    refreshNotifyButton();
  });

  window.portal = {
    on,
    onConnection: (handler) => connectionListeners.push(handler),
    isConnected,
    send,
    forgetOffer,
    showMessage,
    resync,
    sameIds,
    csrfToken: root.dataset.csrfToken,
    format: { languageLabel, humanize, customerLabel },
  };

  // After every deferred script, so that the page's own listeners hear the first frame too.
  document.addEventListener("DOMContentLoaded", () => {
    startHeartbeat();
    connect();
  });
})();
