// Zvonok web console: live events for pages that ask for them.
// A page with an element [data-live-events] opens the tenant's event websocket; each event is
// re-dispatched on <body> as "zv-<Type>" (e.g. zv-RegistrationChanged) with the event as detail, so
// htmx elements subscribe with hx-trigger="zv-Type[detail.x==1] from:body". After a reconnect the
// page gets "zv-resync" (events may have been missed meanwhile) to reload what it shows.
(function () {
  "use strict";
  var marker = document.querySelector("[data-live-events]");
  if (!marker) return;
  var delay = 1000;
  var opened = false;

  function state(name) {
    marker.dataset.liveState = name;
    marker.textContent = marker.dataset["label" + name.charAt(0).toUpperCase() + name.slice(1)] || "";
  }

  function fire(name, detail) {
    document.body.dispatchEvent(new CustomEvent(name, { detail: detail }));
  }

  function retry() {
    state("closed");
    setTimeout(connect, delay);
    delay = Math.min(delay * 2, 30000);
  }

  function connect() {
    fetch("/session/ws-token", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (r.status === 401 || r.redirected) { window.location.reload(); return null; }
        return r.ok ? r.json() : Promise.reject(r.status);
      })
      .then(function (grant) {
        if (!grant) return;
        var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
        var ws = new WebSocket(scheme + "//" + window.location.host + grant.url + "?token=" + encodeURIComponent(grant.token));
        ws.onopen = function () {
          delay = 1000;
          state("open");
          if (opened) fire("zv-resync", {});
          opened = true;
        };
        ws.onmessage = function (message) {
          var event;
          try { event = JSON.parse(message.data); } catch (e) { return; }
          if (event && typeof event.type === "string") fire("zv-" + event.type, event);
        };
        ws.onclose = retry;
      })
      .catch(retry);
  }
  connect();
})();
