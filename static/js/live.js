// The browser side of the platform's live views (apps/core/browser_sockets.py): one websocket to ``path`` on
// this host, reconnected with a growing delay when it drops; the badge says whether the page is live.
window.liveSocket = function (path, badge, onMessage) {
  "use strict";
  var delay = 1000;
  function connect() {
    var ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + path);
    ws.onopen = function () { badge.textContent = badge.getAttribute("data-on"); badge.className = "live on"; delay = 1000; };
    ws.onmessage = function (event) { onMessage(JSON.parse(event.data)); };
    ws.onclose = function () {
      badge.textContent = badge.getAttribute("data-off"); badge.className = "live off";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
};
