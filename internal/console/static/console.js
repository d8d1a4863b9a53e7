// Keeps a console page current without reloading it: the server sends an event on /updates when what the
// page shows may have changed, and the page fetches itself again and swaps its <main>. Without JavaScript,
// the <noscript> meta refresh reloads the page instead.
(function () {
  "use strict";
  var src = document.body.getAttribute("data-updates");
  var live = document.getElementById("live");
  if (!src || !window.EventSource || !window.fetch || !window.DOMParser) {
    return;
  }
  var label = live ? live.textContent : "";
  function status(text, stale) {
    if (!live) return;
    live.textContent = text ? label + " · " + text : label;
    live.className = stale ? "live stale" : "live";
  }
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.href, { headers: { "Accept": "text/html" }, credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error(r.status + " " + r.statusText);
        return r.text();
      })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var next = doc.querySelector("main"), cur = document.querySelector("main");
        if (next && cur) {
          cur.replaceWith(document.importNode(next, true));
          document.title = doc.title;
        }
        status("live", false);
      })
      .catch(function (e) { status("update failed: " + e.message, true); })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }
  var es = new EventSource(src);
  var opened = false;
  es.addEventListener("change", refresh);
  es.onopen = function () {
    // After a reconnect, changes may have been missed.
    if (opened) refresh();
    opened = true;
    status("live", false);
  };
  es.onerror = function () { status("reconnecting", true); };
})();
