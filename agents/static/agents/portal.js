"use strict";

// The agent portal: state arrives over /ws/agent/ (contract section 5); replies and
// resolutions go through the agent REST API. Every text that came from a customer, the bot or
// the server is written with textContent, never parsed as HTML.

const HEARTBEAT_MS = 20000;
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 30000;
const CLOSE_UNAUTHENTICATED = 4401;
const CLOSE_NOT_AN_AGENT = 4403;

const STATUS_NOTES = {
  available: "You are available: new offers come to you.",
  away: "You are away: no new offers until you are available.",
  offline: "You are offline: no new offers.",
};
const REVOKE_REASONS = {
  expired: "it expired",
  cancelled: "the customer left",
  reassigned: "it went to another agent",
  offline: "you were offline",
};
const ROLE_LABELS = { customer: "Customer", bot: "Bot", agent: "Agent", system: "System" };

const portal = document.getElementById("portal");
const ui = {
  banner: document.getElementById("connection-banner"),
  error: document.getElementById("error"),
  name: document.getElementById("agent-name"),
  statusSwitch: document.getElementById("status-switch"),
  statusNote: document.getElementById("status-note"),
  offers: document.getElementById("offers"),
  offersEmpty: document.getElementById("offers-empty"),
  offersNote: document.getElementById("offers-note"),
  tickets: document.getElementById("tickets"),
  ticketsEmpty: document.getElementById("tickets-empty"),
  ticketsNote: document.getElementById("tickets-note"),
  ticketsLoad: document.getElementById("tickets-load"),
  offerTemplate: document.getElementById("offer-template"),
  ticketTemplate: document.getElementById("ticket-template"),
};
// Countdowns run on the server's clock: a computer clock a few seconds off would otherwise
// show a live offer as expired, or let the agent click an offer that is already gone. The
// page's first response byte is the closest local moment to the server's rendering of it.
const navigation = performance.getEntriesByType("navigation")[0];
const renderedAtMs = navigation ? performance.timeOrigin + navigation.responseStart : Date.now();
const clockSkewMs = Number(portal.dataset.serverTimeMs) - renderedAtMs;
const baseTitle = document.title;
const languageNames =
  typeof Intl.DisplayNames === "function"
    ? new Intl.DisplayNames(["en"], { type: "language" })
    : null;

const state = {
  status: null,
  capacity: null,
  offers: new Map(),
  tickets: new Map(),
};
let socket = null;
let retryDelay = RETRY_FIRST_MS;

function part(root, selector) {
  return root.querySelector(selector);
}

function setText(root, selector, text) {
  part(root, selector).textContent = text;
}

function showMessage(element, text) {
  element.textContent = text;
  element.hidden = !text;
}

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

function errorText(body, fallback) {
  if (body && typeof body.detail === "string") {
    return body.detail;
  }
  if (body && typeof body === "object") {
    const messages = Object.values(body).flat().filter((item) => typeof item === "string");
    if (messages.length) {
      return messages.join(" ");
    }
  }
  return fallback;
}

function socketUrl() {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}${portal.dataset.socketPath}`;
}

function isConnected() {
  return socket !== null && socket.readyState === WebSocket.OPEN;
}

function sendFrame(frame) {
  if (!isConnected()) {
    showMessage(ui.error, "Not connected: wait until the connection is back.");
    return false;
  }
  showMessage(ui.error, "");
  socket.send(JSON.stringify(frame));
  return true;
}

function setConnected(connected) {
  ui.statusSwitch.disabled = !connected;
  for (const offer of state.offers.values()) {
    updateOfferButtons(offer);
  }
}

function startHeartbeat() {
  const heartbeat = new Worker(portal.dataset.heartbeatWorker);
  heartbeat.addEventListener("message", () => {
    if (isConnected()) {
      socket.send(JSON.stringify({ type: "heartbeat" }));
    }
  });
  heartbeat.postMessage(HEARTBEAT_MS);
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
      window.location.assign(`${portal.dataset.loginUrl}?next=${next}`);
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

const frameHandlers = {
  hello(frame) {
    retryDelay = RETRY_FIRST_MS;
    ui.banner.hidden = true;
    ui.name.textContent = frame.agent.display_name;
    state.capacity = frame.agent.capacity;
    applyStatus(frame.agent.status);
    renderOffers(frame.offers);
    syncTickets(frame.tickets);
    setConnected(true);
  },
  status(frame) {
    applyStatus(frame.status);
  },
  "offer.created"(frame) {
    addOffer(frame.offer);
    refreshCounts();
  },
  "offer.revoked"(frame) {
    const offer = state.offers.get(frame.offer_id);
    if (offer) {
      const reason = REVOKE_REASONS[frame.reason] || humanize(frame.reason);
      const customer = customerLabel(offer.data.ticket.customer);
      ui.offersNote.textContent = `Offer for ${customer} withdrawn: ${reason}.`;
      removeOffer(offer);
    }
  },
  "ticket.assigned"(frame) {
    const ticket = frame.ticket;
    let acceptedHere = false;
    for (const offer of [...state.offers.values()]) {
      if (offer.data.ticket.id === ticket.id) {
        acceptedHere = offer.busy;
        removeOffer(offer);
      }
    }
    const entry = upsertTicket(ticket);
    refreshCounts();
    if (acceptedHere) {
      part(entry.element, "textarea").focus();
    }
  },
  "ticket.message"(frame) {
    const entry = state.tickets.get(frame.ticket_id);
    if (entry) {
      appendMessage(entry, frame.message);
    }
  },
  "ticket.cancelled"(frame) {
    const entry = state.tickets.get(frame.ticket_id);
    if (entry) {
      closeTicket(entry, "The customer left: this ticket is cancelled.");
    }
  },
  "ticket.requeued"(frame) {
    const entry = state.tickets.get(frame.ticket_id);
    if (entry) {
      const customer = customerLabel(entry.data.customer);
      ui.ticketsNote.textContent = `The ticket for ${customer} went back to the queue.`;
      removeTicket(entry);
    }
  },
  error(frame) {
    showMessage(ui.error, frame.detail);
    applyStatus(state.status);
    for (const offer of state.offers.values()) {
      offer.busy = false;
      updateOfferButtons(offer);
    }
  },
};

function handleFrame(frame) {
  const handler = frameHandlers[frame.type];
  if (handler) {
    handler(frame);
  }
}

function applyStatus(status) {
  state.status = status;
  for (const radio of ui.statusSwitch.querySelectorAll("input[name=status]")) {
    radio.checked = radio.value === status;
  }
  ui.statusNote.textContent = STATUS_NOTES[status] || "";
}

ui.statusSwitch.addEventListener("change", (event) => {
  ui.statusNote.textContent = "Saving…";
  if (!sendFrame({ type: "status.set", status: event.target.value })) {
    applyStatus(state.status);
  }
});

function messageElement(message, customerName) {
  const item = document.createElement("li");
  item.className = `message from-${message.role}`;
  item.dataset.messageId = message.id;
  const head = document.createElement("div");
  head.className = "message-head";
  const who = document.createElement("span");
  who.className = "who";
  who.textContent =
    message.role === "customer" && customerName
      ? customerName
      : ROLE_LABELS[message.role] || message.role;
  const time = document.createElement("time");
  time.dateTime = message.sent_at;
  time.textContent = new Date(message.sent_at).toLocaleTimeString([], {
    hour: "2-digit",
    minute: "2-digit",
  });
  head.append(who, time);
  const text = document.createElement("p");
  text.className = "message-text";
  text.textContent = message.text;
  item.append(head, text);
  return item;
}

function renderTranscript(list, messages, customerName) {
  list.replaceChildren(...messages.map((message) => messageElement(message, customerName)));
}

function scrollToEnd(list) {
  list.scrollTop = list.scrollHeight;
}

function renderOffers(offers) {
  state.offers.clear();
  ui.offers.replaceChildren();
  offers.forEach(addOffer);
  refreshCounts();
}

function addOffer(data) {
  if (state.offers.has(data.id)) {
    return;
  }
  const element = ui.offerTemplate.content.firstElementChild.cloneNode(true);
  const ticket = data.ticket;
  element.dataset.offerId = data.id;
  setText(element, ".customer-name", customerLabel(ticket.customer));
  setText(element, ".tier", ticket.customer.tier);
  part(element, ".tier").hidden = !ticket.customer.tier;
  setText(element, ".language", languageLabel(ticket.language));
  setText(element, ".priority", ticket.priority);
  part(element, ".priority").dataset.priority = ticket.priority;
  setText(element, ".reason", humanize(ticket.reason));
  setText(element, ".skills", ticket.skills.length ? ticket.skills.join(", ") : "none");
  setText(element, ".summary", ticket.summary);
  part(element, ".summary").hidden = !ticket.summary;
  renderTranscript(part(element, ".transcript"), ticket.transcript, ticket.customer.name);
  part(element, "details").hidden = !ticket.transcript.length;
  const offer = { data, element, expiresAt: Date.parse(data.expires_at), busy: false };
  part(element, "[data-action=accept]").addEventListener("click", () => acceptOffer(offer));
  part(element, "[data-action=decline]").addEventListener("click", () => declineOffer(offer));
  state.offers.set(data.id, offer);
  ui.offers.append(element);
  tickCountdown(offer);
}

function removeOffer(offer) {
  state.offers.delete(offer.data.id);
  offer.element.remove();
  refreshCounts();
}

function secondsLeft(offer) {
  return Math.max(0, Math.round((offer.expiresAt - (Date.now() + clockSkewMs)) / 1000));
}

function tickCountdown(offer) {
  const left = secondsLeft(offer);
  const countdown = part(offer.element, ".countdown");
  countdown.textContent = left > 0 ? `Expires in ${left} s` : "Expired";
  countdown.classList.toggle("urgent", left <= 10);
  updateOfferButtons(offer);
}

function updateOfferButtons(offer) {
  const accept = part(offer.element, "[data-action=accept]");
  accept.disabled = offer.busy || !isConnected() || secondsLeft(offer) === 0;
  accept.textContent = offer.busy ? "Accepting…" : "Accept";
  part(offer.element, "[data-action=decline]").disabled = offer.busy || !isConnected();
}

function acceptOffer(offer) {
  if (sendFrame({ type: "offer.accept", offer_id: offer.data.id })) {
    offer.busy = true;
    updateOfferButtons(offer);
  }
}

function declineOffer(offer) {
  // A decline is not answered with a frame of its own; an error frame would follow if it failed.
  if (sendFrame({ type: "offer.decline", offer_id: offer.data.id })) {
    const customer = customerLabel(offer.data.ticket.customer);
    ui.offersNote.textContent = `Declined the offer for ${customer}.`;
    removeOffer(offer);
  }
}

window.setInterval(() => state.offers.forEach(tickCountdown), 1000);

function syncTickets(tickets) {
  const current = new Set(tickets.map((ticket) => ticket.id));
  for (const entry of [...state.tickets.values()]) {
    // A cancelled ticket stays until the agent dismisses it, so its notice is not lost.
    if (!current.has(entry.data.id) && !entry.closed) {
      removeTicket(entry);
    }
  }
  tickets.forEach(upsertTicket);
  refreshCounts();
}

function upsertTicket(data) {
  const existing = state.tickets.get(data.id);
  if (existing) {
    // Re-rendered in place, so a reconnect never loses a reply the agent was typing.
    existing.data = data;
    renderTicket(existing);
    return existing;
  }
  const element = ui.ticketTemplate.content.firstElementChild.cloneNode(true);
  element.dataset.ticketId = data.id;
  for (const label of element.querySelectorAll("label[data-for]")) {
    const id = `${label.dataset.for}-${data.id}`;
    label.htmlFor = id;
    part(element, `[data-id=${label.dataset.for}]`).id = id;
  }
  const entry = { data, element, closed: false };
  bindTicket(entry);
  state.tickets.set(data.id, entry);
  ui.tickets.append(element);
  renderTicket(entry);
  return entry;
}

function renderTicket(entry) {
  const { data, element } = entry;
  setText(element, ".customer-name", customerLabel(data.customer));
  setText(element, ".tier", data.customer.tier);
  part(element, ".tier").hidden = !data.customer.tier;
  const meta = [languageLabel(data.language), `${data.priority} priority`, ...data.skills];
  setText(element, ".meta", meta.join(" · "));
  setText(element, ".summary", data.summary);
  part(element, ".summary").hidden = !data.summary;
  part(element, "label[data-for=reply]").textContent = `Reply to ${customerLabel(data.customer)}`;
  const transcript = part(element, ".transcript");
  renderTranscript(transcript, data.messages, data.customer.name);
  scrollToEnd(transcript);
}

function appendMessage(entry, message) {
  const transcript = part(entry.element, ".transcript");
  if (entry.data.messages.some((known) => known.id === message.id)) {
    return;
  }
  entry.data.messages.push(message);
  transcript.append(messageElement(message, entry.data.customer.name));
  scrollToEnd(transcript);
}

function removeTicket(entry) {
  state.tickets.delete(entry.data.id);
  entry.element.remove();
  refreshCounts();
}

function closeTicket(entry, text) {
  entry.closed = true;
  entry.element.classList.add("is-closed");
  for (const form of entry.element.querySelectorAll("form")) {
    for (const control of form.elements) {
      control.disabled = true;
    }
  }
  setText(entry.element, ".closed-text", text);
  part(entry.element, ".closed").hidden = false;
  refreshCounts();
}

async function postJson(url, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: {
      "Content-Type": "application/json",
      Accept: "application/json",
      "X-CSRFToken": portal.dataset.csrfToken,
    },
    body: JSON.stringify(body),
  });
  const payload = await response.json().catch(() => null);
  if (!response.ok) {
    throw new Error(errorText(payload, `The server answered ${response.status}.`));
  }
  return payload;
}

function ticketUrl(entry, action) {
  return `${portal.dataset.ticketsApi}${entry.data.id}/${action}/`;
}

function bindTicket(entry) {
  const { element } = entry;
  const replyForm = part(element, "form.reply");
  const textarea = part(replyForm, "textarea");
  const replyError = part(replyForm, ".error");
  const resolveForm = part(element, "form.resolve");
  const resolveError = part(resolveForm, ".error");

  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      replyForm.requestSubmit();
    }
  });

  replyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = textarea.value;
    if (!text.trim() || textarea.readOnly) {
      return;
    }
    // Read-only, not disabled, so the box keeps focus for the next reply.
    textarea.readOnly = true;
    showMessage(replyError, "");
    try {
      appendMessage(entry, await postJson(ticketUrl(entry, "messages"), { text }));
      textarea.value = "";
    } catch (error) {
      showMessage(replyError, `Not sent: ${error.message}`);
    } finally {
      textarea.readOnly = false;
    }
  });

  resolveForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const outcome = resolveForm.elements.outcome.value;
    const button = part(resolveForm, "button");
    button.disabled = true;
    showMessage(resolveError, "");
    try {
      await postJson(ticketUrl(entry, "resolve"), {
        outcome,
        note: resolveForm.elements.note.value,
      });
      const customer = customerLabel(entry.data.customer);
      const label = resolveForm.elements.outcome.selectedOptions[0].textContent.toLowerCase();
      ui.ticketsNote.textContent = `Resolved the ticket for ${customer}: ${label}.`;
      removeTicket(entry);
    } catch (error) {
      showMessage(resolveError, `Not resolved: ${error.message}`);
      button.disabled = false;
    }
  });

  part(element, "[data-action=dismiss]").addEventListener("click", () => removeTicket(entry));
}

function refreshCounts() {
  ui.offersEmpty.hidden = state.offers.size > 0;
  ui.ticketsEmpty.hidden = state.tickets.size > 0;
  const working = [...state.tickets.values()].filter((entry) => !entry.closed).length;
  ui.ticketsLoad.textContent = state.capacity ? `(${working} of ${state.capacity})` : "";
  // An agent working in another tab sees a waiting offer in this tab's title.
  document.title = state.offers.size ? `(${state.offers.size}) ${baseTitle}` : baseTitle;
}

startHeartbeat();
connect();
