"use strict";

// The workspace: offers with their countdowns, and the tickets the agent works on. Frames come
// from portal.js; replies, resolutions and releases go through the agent REST API. Text from a
// customer, the bot or the server is only ever written with textContent.

(() => {
  const { portal } = window;
  const { languageLabel, humanize, customerLabel } = portal.format;

  const REVOKE_REASONS = {
    expired: "it expired",
    cancelled: "the customer left",
    reassigned: "it went to another agent",
    offline: "you were offline",
  };
  const ROLE_LABELS = { customer: "Customer", bot: "Bot", agent: "Agent", system: "System" };
  // Frames arrive at most once: were an accepted offer's `ticket.assigned` (or the error that
  // refused it) lost on the way, the offer would say "Accepting…" and its ticket never show
  // while the customer waits. An accept still unanswered after this long reads the offers and
  // tickets over HTTP instead.
  const ACCEPT_ANSWER_MS = 5000;

  const workspace = document.getElementById("workspace");
  const ui = {
    offers: document.getElementById("offers"),
    offersEmpty: document.getElementById("offers-empty"),
    offersNote: document.getElementById("offers-note"),
    tickets: document.getElementById("tickets"),
    ticketsEmpty: document.getElementById("tickets-empty"),
    ticketsNote: document.getElementById("tickets-note"),
    load: document.getElementById("stat-load"),
    offerTemplate: document.getElementById("offer-template"),
    ticketTemplate: document.getElementById("ticket-template"),
  };
  // Countdowns run on the server's clock: a computer clock a few seconds off would otherwise
  // show a live offer as expired, or let the agent click an offer that is already gone. The
  // page's first response byte is the closest local moment to the server's rendering of it.
  const navigation = performance.getEntriesByType("navigation")[0];
  const renderedAtMs = navigation ? performance.timeOrigin + navigation.responseStart : Date.now();
  const clockSkewMs = Number(workspace.dataset.serverTimeMs) - renderedAtMs;

  const state = { capacity: null, offers: new Map(), tickets: new Map() };

  function part(root, selector) {
    return root.querySelector(selector);
  }

  function setText(root, selector, text) {
    part(root, selector).textContent = text;
  }

  function durationText(totalSeconds) {
    const minutes = Math.floor(totalSeconds / 60);
    if (minutes >= 60) {
      return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
    }
    return minutes ? `${minutes} min ${totalSeconds % 60} s` : `${totalSeconds} s`;
  }

  function errorText(body, fallback) {
    if (body && typeof body.detail === "string") {
      return body.detail;
    }
    if (body && typeof body === "object") {
      const messages = Object.values(body)
        .flat()
        .filter((item) => typeof item === "string");
      if (messages.length) {
        return messages.join(" ");
      }
    }
    return fallback;
  }

  const NOT_TYPED_INTO = new Set(["button", "checkbox", "radio", "reset", "submit"]);

  function isTypedInto(element) {
    return (
      (element instanceof HTMLInputElement && !NOT_TYPED_INTO.has(element.type)) ||
      element instanceof HTMLTextAreaElement ||
      element instanceof HTMLSelectElement ||
      (element instanceof HTMLElement && element.isContentEditable)
    );
  }

  // Transcript

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

  function labelControls(element, suffix) {
    for (const label of element.querySelectorAll("label[data-for]")) {
      const id = `${label.dataset.for}-${suffix}`;
      label.htmlFor = id;
      part(element, `[data-id=${label.dataset.for}]`).id = id;
    }
  }

  // Offers

  function syncOffers(offers) {
    const current = new Set(offers.map((offer) => offer.id));
    for (const offer of [...state.offers.values()]) {
      if (!current.has(offer.data.id)) {
        removeOffer(offer);
      }
    }
    offers.forEach(addOffer);
  }

  function addOffer(data) {
    if (state.offers.has(data.id)) {
      return;
    }
    const element = ui.offerTemplate.content.firstElementChild.cloneNode(true);
    const ticket = data.ticket;
    element.dataset.offerId = data.id;
    labelControls(element, data.id);
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
    const offer = {
      data,
      element,
      expiresAt: Date.parse(data.expires_at),
      waitingSince: Date.now() - ticket.waiting_seconds * 1000,
      busy: false,
    };
    bindOffer(offer);
    state.offers.set(data.id, offer);
    ui.offers.append(element);
    tickOffer(offer);
    refreshCounts();
  }

  function bindOffer(offer) {
    const { element } = offer;
    const declineForm = part(element, "form.decline");
    part(element, "[data-action=accept]").addEventListener("click", () => acceptOffer(offer));
    part(element, "[data-action=decline]").addEventListener("click", () => {
      if (declineForm.hidden) {
        openDecline(offer);
      } else {
        closeDecline(offer);
      }
    });
    part(element, "[data-action=keep]").addEventListener("click", () => closeDecline(offer));
    declineForm.addEventListener("submit", (event) => {
      event.preventDefault();
      declineOffer(offer, declineForm.elements.reason.value.trim());
    });
    declineForm.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        closeDecline(offer);
      }
    });
  }

  function openDecline(offer) {
    const form = part(offer.element, "form.decline");
    form.hidden = false;
    part(offer.element, "[data-action=decline]").setAttribute("aria-expanded", "true");
    form.elements.reason.focus();
  }

  function closeDecline(offer) {
    part(offer.element, "form.decline").hidden = true;
    const toggle = part(offer.element, "[data-action=decline]");
    toggle.setAttribute("aria-expanded", "false");
    toggle.focus();
  }

  function removeOffer(offer) {
    state.offers.delete(offer.data.id);
    offer.element.remove();
    refreshCounts();
  }

  function secondsLeft(offer) {
    return Math.max(0, Math.round((offer.expiresAt - (Date.now() + clockSkewMs)) / 1000));
  }

  function tickOffer(offer) {
    const left = secondsLeft(offer);
    const countdown = part(offer.element, ".countdown");
    countdown.textContent = left > 0 ? `Expires in ${left} s` : "Expired";
    countdown.classList.toggle("urgent", left <= 10);
    const waited = Math.max(0, Math.floor((Date.now() - offer.waitingSince) / 1000));
    setText(offer.element, ".waiting", `Customer waiting ${durationText(waited)}`);
    updateOfferButtons(offer);
  }

  function updateOfferButtons(offer) {
    const connected = portal.isConnected();
    const accept = part(offer.element, "[data-action=accept]");
    accept.disabled = offer.busy || !connected || secondsLeft(offer) === 0;
    accept.textContent = offer.busy ? "Accepting…" : "Accept";
    part(offer.element, "[data-action=decline]").disabled = offer.busy || !connected;
    for (const control of part(offer.element, "form.decline").elements) {
      control.disabled = offer.busy || !connected;
    }
  }

  function acceptOffer(offer) {
    if (!offer.busy && portal.send({ type: "offer.accept", offer_id: offer.data.id })) {
      offer.busy = true;
      updateOfferButtons(offer);
      window.setTimeout(() => resyncUnanswered(offer), ACCEPT_ANSWER_MS);
    }
  }

  async function resyncUnanswered(offer) {
    if (!offer.busy || state.offers.get(offer.data.id) !== offer) {
      return;
    }
    try {
      await portal.resync();
    } catch {
      // The server cannot be reached: the reconnect that follows resyncs with its `hello`.
    } finally {
      // Still pending (or unknown), the offer can be accepted again.
      offer.busy = false;
      updateOfferButtons(offer);
    }
  }

  function declineOffer(offer, reason) {
    // A decline is not answered with a frame of its own; an error frame would follow if it failed.
    const frame = { type: "offer.decline", offer_id: offer.data.id };
    if (reason) {
      frame.reason = reason;
    }
    if (portal.send(frame)) {
      const customer = customerLabel(offer.data.ticket.customer);
      ui.offersNote.textContent = `Declined the offer for ${customer}.`;
      portal.forgetOffer(offer.data.id);
      removeOffer(offer);
    }
  }

  function offerFor(element) {
    const card = element instanceof Element ? element.closest(".offer") : null;
    if (card) {
      return state.offers.get(card.dataset.offerId);
    }
    return state.offers.values().next().value;
  }

  // A and D act on the offer the focus is in, or else the first one; never while typing.
  document.addEventListener("keydown", (event) => {
    if (
      event.defaultPrevented ||
      event.repeat ||
      event.ctrlKey ||
      event.metaKey ||
      event.altKey ||
      isTypedInto(event.target)
    ) {
      return;
    }
    const key = event.key.toLowerCase();
    if (key !== "a" && key !== "d") {
      return;
    }
    const offer = offerFor(document.activeElement);
    if (!offer) {
      return;
    }
    event.preventDefault();
    if (key === "a") {
      acceptOffer(offer);
    } else if (!offer.busy && portal.isConnected()) {
      openDecline(offer);
    }
  });

  window.setInterval(() => state.offers.forEach(tickOffer), 1000);

  // Tickets

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
    labelControls(element, data.id);
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
    setText(element, ".escalation .reason", humanize(data.reason));
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
    part(entry.element, "details.release-panel").hidden = true;
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
        "X-CSRFToken": portal.csrfToken,
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
    return `${workspace.dataset.ticketsApi}${entry.data.id}/${action}/`;
  }

  // Runs a ticket form's request with its submit button disabled; shows a failure in the form.
  async function submitTicketForm(form, failure, request) {
    const button = part(form, "button[type=submit]");
    const error = part(form, ".error");
    button.disabled = true;
    portal.showMessage(error, "");
    try {
      await request();
    } catch (problem) {
      portal.showMessage(error, `${failure}: ${problem.message}`);
      button.disabled = false;
    }
  }

  function bindTicket(entry) {
    const { element } = entry;
    const replyForm = part(element, "form.reply");
    const textarea = part(replyForm, "textarea");
    const replyError = part(replyForm, ".error");
    const resolveForm = part(element, "form.resolve");
    const releaseForm = part(element, "form.release");
    const customer = () => customerLabel(entry.data.customer);

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
      portal.showMessage(replyError, "");
      try {
        appendMessage(entry, await postJson(ticketUrl(entry, "messages"), { text }));
        textarea.value = "";
      } catch (problem) {
        portal.showMessage(replyError, `Not sent: ${problem.message}`);
      } finally {
        textarea.readOnly = false;
      }
    });

    resolveForm.addEventListener("submit", (event) => {
      event.preventDefault();
      submitTicketForm(resolveForm, "Not resolved", async () => {
        await postJson(ticketUrl(entry, "resolve"), {
          outcome: resolveForm.elements.outcome.value,
          note: resolveForm.elements.note.value,
        });
        const label = resolveForm.elements.outcome.selectedOptions[0].textContent.toLowerCase();
        ui.ticketsNote.textContent = `Resolved the ticket for ${customer()}: ${label}.`;
        removeTicket(entry);
        // The day's figures are the server's to count: htmx fetches them again.
        document.body.dispatchEvent(new CustomEvent("ticket-resolved"));
      });
    });

    releaseForm.addEventListener("submit", (event) => {
      event.preventDefault();
      submitTicketForm(releaseForm, "Not released", async () => {
        await postJson(ticketUrl(entry, "release"), {
          reason: releaseForm.elements.reason.value.trim(),
        });
        ui.ticketsNote.textContent = `Released the ticket for ${customer()} back to the queue.`;
        removeTicket(entry);
      });
    });

    part(element, "[data-action=dismiss]").addEventListener("click", () => removeTicket(entry));
  }

  function refreshCounts() {
    ui.offersEmpty.hidden = state.offers.size > 0;
    ui.ticketsEmpty.hidden = state.tickets.size > 0;
    if (state.capacity !== null) {
      const working = [...state.tickets.values()].filter((entry) => !entry.closed).length;
      ui.load.textContent = `${working} of ${state.capacity}`;
    }
  }

  // Frames

  portal.on("hello", (frame) => {
    state.capacity = frame.agent.capacity;
    syncOffers(frame.offers);
    syncTickets(frame.tickets);
  });
  portal.on("heartbeat.ack", (frame) => {
    // A ticket assigned, requeued or cancelled whose frame was lost (portal.js does the same
    // for offers); a cancelled ticket stays on screen, closed, until the agent dismisses it.
    const open = [...state.tickets.values()].filter((entry) => !entry.closed);
    if (!portal.sameIds(frame.tickets, new Set(open.map((entry) => entry.data.id)))) {
      portal.resync().catch(() => {});
    }
  });
  portal.on("offer.created", (frame) => addOffer(frame.offer));
  portal.on("offer.revoked", (frame) => {
    const offer = state.offers.get(frame.offer_id);
    if (offer) {
      const reason = REVOKE_REASONS[frame.reason] || humanize(frame.reason);
      const customer = customerLabel(offer.data.ticket.customer);
      ui.offersNote.textContent = `Offer for ${customer} withdrawn: ${reason}.`;
      removeOffer(offer);
    }
  });
  portal.on("ticket.assigned", (frame) => {
    let acceptedHere = false;
    for (const offer of [...state.offers.values()]) {
      if (offer.data.ticket.id === frame.ticket.id) {
        acceptedHere = offer.busy;
        removeOffer(offer);
      }
    }
    const entry = upsertTicket(frame.ticket);
    refreshCounts();
    if (acceptedHere) {
      part(entry.element, "textarea").focus();
    }
  });
  portal.on("ticket.message", (frame) => {
    const entry = state.tickets.get(frame.ticket_id);
    if (entry) {
      appendMessage(entry, frame.message);
    }
  });
  portal.on("ticket.cancelled", (frame) => {
    const entry = state.tickets.get(frame.ticket_id);
    if (entry) {
      closeTicket(entry, "The customer left: this ticket is cancelled.");
    }
  });
  portal.on("ticket.requeued", (frame) => {
    const entry = state.tickets.get(frame.ticket_id);
    if (entry) {
      const customer = customerLabel(entry.data.customer);
      ui.ticketsNote.textContent = `The ticket for ${customer} went back to the queue.`;
      removeTicket(entry);
    }
  });
  portal.on("error", () => {
    for (const offer of state.offers.values()) {
      offer.busy = false;
      updateOfferButtons(offer);
    }
  });
  portal.onConnection(() => state.offers.forEach(updateOfferButtons));
})();
