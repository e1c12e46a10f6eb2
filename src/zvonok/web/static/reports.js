// Cost report chart: uPlot bars of the cost per group (or per day) from the JSON the page embeds;
// the table below it has the same figures. Redrawn to the figure's width on resize.
(function () {
  "use strict";
  var holder = document.getElementById("report-chart");
  var source = document.getElementById("report-data");
  if (!holder || !source || typeof uPlot === "undefined") return;
  var data = JSON.parse(source.textContent);
  var xs = data.labels.map(function (_, i) { return i; });
  var style = getComputedStyle(document.documentElement);
  var color = (style.getPropertyValue("--pico-primary") || "#0172ad").trim();
  var bars = uPlot.paths.bars({ size: [0.6, 64] });
  function width() { return Math.max(300, holder.clientWidth); }
  var opts = {
    width: width(), height: 300,
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: false, range: function () { return [-0.5, xs.length - 0.5]; } } },
    axes: [
      { values: function (u, splits) {
          return splits.map(function (i) { return Number.isInteger(i) && data.labels[i] !== undefined ? data.labels[i] : ""; });
        },
        splits: function () { return xs; },
        rotate: data.labels.length > 8 ? -45 : 0, size: data.labels.length > 8 ? 80 : 40 },
      { label: data.cost_label, size: 70 }
    ],
    series: [{}, { label: data.cost_label, fill: color + "cc", stroke: color, width: 1, paths: bars, points: { show: false } }]
  };
  var plot = new uPlot(opts, [xs, data.costs], holder);
  window.addEventListener("resize", function () { plot.setSize({ width: width(), height: 300 }); });
})();
