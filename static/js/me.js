// The resident's live view: applies what apps/portal/consumers.py pushes to the sessions the page rendered.
// Values arrive as strings (exact decimals) and are shown as they are; text only (never HTML).
(function () {
  "use strict";
  var badge = document.getElementById("live");
  var now = document.getElementById("now");
  if (!badge || !now) { return; }
  var shown = now.getAttribute("data-sessions");

  function text(el, value) {
    var out = (value === null || value === "" || value === undefined)
      ? (el.hasAttribute("data-empty") ? el.getAttribute("data-empty") : "—")
      : String(value) + (el.getAttribute("data-suffix") || "");
    if (el.textContent !== out) { el.textContent = out; }
  }

  function apply(message) {
    var sessions = message.sessions || {};
    var ids = Object.keys(sessions).sort(function (a, b) { return a - b; }).join(",");
    var mine = shown.split(",").filter(Boolean).sort(function (a, b) { return a - b; }).join(",");
    if (ids !== mine) { location.reload(); return; } // a session started or ended: the page is redrawn
    Object.keys(sessions).forEach(function (pk) {
      var row = sessions[pk];
      var div = now.querySelector('[data-session="' + CSS.escape(pk) + '"]');
      if (!div) { return; }
      div.querySelectorAll("[data-f]").forEach(function (el) {
        var f = el.getAttribute("data-f");
        if (f === "online") {
          el.className = "badge " + (row.online ? "ok" : "bad");
          el.textContent = el.getAttribute(row.online ? "data-on" : "data-off");
        } else if (f in row) {
          text(el, row[f]);
        }
      });
    });
  }

  window.liveSocket("/ws/me/", badge, apply);
})();
