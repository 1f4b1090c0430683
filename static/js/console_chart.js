// The console's chart (apps/console/history.py): the metered node's load, the EVs' part, the rest and the limit,
// a point a minute, drawn with uPlot (static/vendor/uplot) in the building's own time zone; fetched again every
// minute. Amperes arrive as strings (exact) and are turned into numbers only to be drawn.
(function () {
  "use strict";
  var section = document.getElementById("load-chart");
  if (!section || !window.uPlot) { return; }
  var box = document.getElementById("chart");
  var zone = section.getAttribute("data-zone");
  var hours = Number(new URLSearchParams(location.search).get("hours")) || 6;
  var plot = null;

  function numbers(column) { return column.map(function (v) { return v === null ? null : Number(v); }); }

  function options(width) {
    return {
      width: width, height: 260,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), zone); },
      scales: { y: { range: function (u, min, max) { return [0, Math.max(10, max * 1.1)]; } } },
      series: [
        {},
        { label: section.getAttribute("data-building"), stroke: "#1c2430", width: 1.5 },
        { label: section.getAttribute("data-ev"), stroke: "#0b6e4f", fill: "rgba(11,110,79,.12)", width: 1.5 },
        { label: section.getAttribute("data-other"), stroke: "#8a94a3", width: 1 },
        { label: section.getAttribute("data-limit"), stroke: "#b3261e", dash: [6, 4], width: 1.5 }
      ],
      axes: [{}, { label: "A" }]
    };
  }

  function draw(data) {
    document.getElementById("chart-node").textContent = data.node;
    var columns = [data.t, numbers(data.building_a), numbers(data.ev_a), numbers(data.other_a), numbers(data.limit_a)];
    var empty = columns.slice(1).every(function (c) { return c.every(function (v) { return v === null; }); });
    document.getElementById("chart-empty").hidden = !empty;
    section.setAttribute("data-points", String(columns[1].filter(function (v) { return v !== null; }).length));
    if (plot) { plot.setData(columns); return; }
    plot = new uPlot(options(Math.max(box.clientWidth, 280)), columns, box);
  }

  function load() {
    fetch(section.getAttribute("data-url") + "?hours=" + hours, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data) { draw(data); } })
      .catch(function () { /* the next minute tries again */ });
  }

  section.querySelectorAll("[data-hours]").forEach(function (a) {
    a.classList.toggle("current", Number(a.getAttribute("data-hours")) === hours);
    a.addEventListener("click", function (event) {
      event.preventDefault();
      hours = Number(a.getAttribute("data-hours"));
      section.querySelectorAll("[data-hours]").forEach(function (b) { b.classList.toggle("current", b === a); });
      history.replaceState(null, "", "?hours=" + hours + "#load-chart");
      load();
    });
  });
  window.addEventListener("resize", function () { if (plot) { plot.setSize({ width: Math.max(box.clientWidth, 280), height: 260 }); } });
  load();
  setInterval(load, 60000);
})();
