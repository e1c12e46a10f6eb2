// The employee portal (/me): copy buttons, and a confirmation before resetting the SIP password.
(function () {
  "use strict";
  function announce(button) {
    var box = button.closest(".account");
    var out = box && box.querySelector(".copied");
    if (out) out.textContent = out.dataset.copied || "";
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var input = document.getElementById(button.dataset.copy);
    if (!input) return;
    input.select();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(function () { announce(button); });
    } else if (document.execCommand("copy")) {  // plain http on a LAN address: no Clipboard API there
      announce(button);
    }
  });
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
  });
})();
