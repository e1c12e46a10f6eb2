// Calls in progress: each [data-since] (epoch seconds, with the server's [data-now] when it was
// rendered, so a wrong clock in the browser does not matter) shows how long the call has lasted,
// updated every second; htmx swaps the rows in, so the elements are looked up at each tick.
(function () {
  "use strict";
  function two(n) { return (n < 10 ? "0" : "") + n; }
  function tick() {
    var els = document.querySelectorAll("[data-since]");
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      if (!el.dataset.loaded) el.dataset.loaded = String(Date.now() / 1000);
      var elapsed = parseFloat(el.dataset.now) - parseFloat(el.dataset.since) +
        (Date.now() / 1000 - parseFloat(el.dataset.loaded));
      var s = Math.max(0, Math.floor(elapsed));
      var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
      el.textContent = (h ? h + ":" + two(m) : String(m)) + ":" + two(s % 60);
    }
  }
  tick();
  setInterval(tick, 1000);
})();
