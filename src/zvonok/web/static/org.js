// The company admin pages: a form with data-confirm asks before it is sent (deletions).
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var question = event.target.dataset && event.target.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });
})();
// A number's form: show only the fields of the chosen destination kind (all are shown without script).
(function () {
  "use strict";
  var select = document.querySelector("[data-kind-switch]");
  if (!select) return;
  function update() {
    document.querySelectorAll("#number-form [data-kinds]").forEach(function (el) {
      el.hidden = el.dataset.kinds.split(" ").indexOf(select.value) < 0;
    });
  }
  select.addEventListener("change", update);
  update();
})();
