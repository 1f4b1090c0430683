// The building console's live view: applies what apps/console/consumers.py pushes to the rows the page rendered.
// Values arrive as strings (exact decimals) and are shown as they are; text only (never HTML).
(function () {
  "use strict";
  var badge = document.getElementById("live");
  if (!badge) { return; }
  var stale = false;

  function text(el, value) {
    var shown;
    if (Array.isArray(value)) {
      shown = value.map(function (v) { return v === null ? "—" : v; }).join(" / ");
    } else if (value === null || value === "" || value === undefined) {
      shown = el.hasAttribute("data-empty") ? el.getAttribute("data-empty") : "—";
    } else {
      shown = String(value) + (el.getAttribute("data-suffix") || "");
    }
    if (el.textContent !== shown) { el.textContent = shown; }
  }

  function connector(row) {
    var tr = document.querySelector('tr[data-connector="' + CSS.escape(row.key) + '"]');
    if (!tr) { stale = true; return; }
    tr.querySelectorAll("[data-f]").forEach(function (el) {
      var f = el.getAttribute("data-f");
      if (f === "online") {
        el.className = "badge " + (row.online ? "ok" : "bad");
        el.textContent = el.getAttribute(row.online ? "data-on" : "data-off");
      } else if (f === "sentence") {
        text(el, row.sentence);
        el.title = row.why;
      } else if (f in row) {
        text(el, row[f]);
      }
    });
  }

  function node(row) {
    var tr = document.querySelector('tr[data-node="' + CSS.escape(row.key) + '"]');
    if (!tr) { stale = true; return; }
    row.phases.forEach(function (p) {
      var div = tr.querySelector('[data-phase="' + p.phase + '"]');
      if (!div) { return; }
      var bar = div.querySelector(".bar");
      bar.className = "bar " + p.level;
      bar.firstElementChild.style.width = (p.percent === null ? 0 : Math.min(p.percent, 100)) + "%";
      div.querySelectorAll("[data-f]").forEach(function (el) { text(el, p[el.getAttribute("data-f")]); });
    });
  }

  function apply(message) {
    (message.connectors || []).forEach(connector);
    (message.nodes || []).forEach(node);
    if (message.run_at) { document.getElementById("run-at").textContent = message.run_at.replace("T", " ").slice(0, 19); }
    if (stale || (message.connectors_gone || []).length || (message.nodes_gone || []).length) {
      location.reload(); // the building's set-up changed: the page's rows are no longer the building's
    }
  }

  window.liveSocket("/ws/console/", badge, apply);
})();
