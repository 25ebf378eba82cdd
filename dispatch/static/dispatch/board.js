"use strict";

// The live board's connection to /ws/board/. Every frame (a ticket transition, an agent's
// status or presence change) fires `board-changed`, on which htmx fetches the figures again;
// the trigger's delay gathers a burst of frames into one request. Frames are only a nudge:
// the figures are fetched again whenever the socket opens, the first time too, since frames
// sent before it opened (after the page was rendered, or while reconnecting) are lost.

(() => {
  // The server drops a socket from the board's group unless it heartbeats within minutes.
  const HEARTBEAT_MS = 60000;
  const RETRY_FIRST_MS = 1000;
  const RETRY_MAX_MS = 30000;
  const CLOSE_UNAUTHENTICATED = 4401;
  const CLOSE_FORBIDDEN = 4403;

  const root = document.getElementById("board");
  const state = document.getElementById("board-connection");
  let retryDelay = RETRY_FIRST_MS;
  let heartbeat = null;

  function changed() {
    htmx.trigger(document.body, "board-changed");
  }

  function show(text, live) {
    state.textContent = text;
    state.classList.toggle("down", !live);
  }

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${window.location.host}${root.dataset.socketPath}`);
    socket.addEventListener("open", () => {
      retryDelay = RETRY_FIRST_MS;
      show("Live", true);
      heartbeat = setInterval(
        () => socket.send(JSON.stringify({ type: "heartbeat" })),
        HEARTBEAT_MS,
      );
      changed();
    });
    socket.addEventListener("message", (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type !== "heartbeat.ack") {
        changed();
      }
    });
    socket.addEventListener("close", (event) => {
      clearInterval(heartbeat);
      if (event.code === CLOSE_UNAUTHENTICATED) {
        const next = encodeURIComponent(window.location.pathname);
        window.location.assign(`${root.dataset.loginUrl}?next=${next}`);
        return;
      }
      if (event.code === CLOSE_FORBIDDEN) {
        show("The live board is for coordinators only.", false);
        return;
      }
      show("Live updates lost: reconnecting…", false);
      // Jitter, so that many boards do not all come back at the same instant.
      setTimeout(connect, retryDelay * (0.5 + Math.random()));
      retryDelay = Math.min(retryDelay * 2, RETRY_MAX_MS);
    });
  }

  connect();
})();
