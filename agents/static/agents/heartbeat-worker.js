"use strict";

// The portal's heartbeat ticks here, not on the page: Chrome slows the timers of a tab hidden
// for a few minutes to one a minute, which would let the agent's connection go stale against
// the server's 60-second heartbeat timeout while they work in another tab. Dedicated workers'
// timers are not throttled that way.
let timer = null;

self.addEventListener("message", (event) => {
  self.clearInterval(timer);
  timer = self.setInterval(() => self.postMessage("beat"), event.data);
});
