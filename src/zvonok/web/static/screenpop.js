// The CRM screen pop: a call ringing this employee arrives as "zv-ScreenPop" (static/app.js re-dispatches
// the websocket's events) and opens the #screen-pop dialog of the layout: the caller's card with a link
// to it, or a "new lead" with a link that creates a client prefilled with the number. The labels are in
// the dialog's markup (translated by the server); this script only fills in the call's data.
(function () {
  "use strict";
  var dialog = document.getElementById("screen-pop");
  if (!dialog) return;
  function text(selector, value) {
    var el = dialog.querySelector(selector);
    el.textContent = value || "—";
  }
  function when(epoch) {
    return new Date(epoch * 1000).toLocaleString(document.documentElement.lang || undefined,
      { dateStyle: "short", timeStyle: "short" });
  }
  function outcome(disposition) {  // no_answer -> data-disposition-no-answer, translated by the server
    var key = "disposition" + String(disposition).split("_").map(function (w) {
      return w.charAt(0).toUpperCase() + w.slice(1);
    }).join("");
    return dialog.dataset[key] || disposition;
  }
  document.body.addEventListener("zv-ScreenPop", function (e) {
    var pop = e.detail, card = pop.card || {};
    var known = card.client_id !== null && card.client_id !== undefined;
    dialog.dataset.callId = pop.call_id;
    dialog.dataset.known = known ? "1" : "0";
    dialog.querySelector("[data-pop-known]").hidden = !known;
    dialog.querySelector("[data-pop-lead]").hidden = known;
    dialog.querySelector("[data-pop-label-known]").hidden = !known;
    dialog.querySelector("[data-pop-label-lead]").hidden = known;
    text("[data-pop-number]", card.number);
    text("[data-pop-name]", card.name);
    text("[data-pop-company]", card.company);
    text("[data-pop-owner]", card.owner);
    var list = dialog.querySelector("[data-pop-calls]");
    list.textContent = "";
    (card.last_calls || []).forEach(function (c) {
      var li = document.createElement("li");
      li.textContent = when(c.started_at) + " · " + (c.employee_name || "—") + " · " + outcome(c.disposition);
      list.appendChild(li);
    });
    var open = dialog.querySelector("[data-pop-open]");
    open.href = known ? "/crm/" + card.client_id : "/crm/new?phone=" + encodeURIComponent(card.number);
    if (!dialog.open) {  // not modal: the employee may go on with what they were doing
      if (typeof dialog.show === "function") dialog.show(); else dialog.setAttribute("open", "");
    }
  });
  dialog.querySelector("[data-pop-close]").addEventListener("click", function () { dialog.close(); });
})();
