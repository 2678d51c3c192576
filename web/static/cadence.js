/* Cadence web app: live figures and the live feed over server-sent events. No inline script
   anywhere (the Content-Security-Policy forbids it); htmx does the partial updates of forms. */
(function () {
  "use strict";
  var dashboardSource = null;
  var feedSource = null;
  var lastFigures = null;
  var swaps = 0;  /* htmx swaps of the dashboard so far */
  var dashboardElement = null;  /* the #dashboard the stream was opened for */

  function refreshControls(dashboard) {
    var url = dashboard.getAttribute("data-refresh");
    var asked = swaps;
    fetch(url, { credentials: "same-origin", headers: { "HX-Request": "true" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        /* A swap meanwhile brought controls at least as new as these: they would undo it. */
        if (!html || asked !== swaps) { return; }
        var page = new DOMParser().parseFromString(html, "text/html");
        var fresh = page.getElementById("controls");
        var current = document.getElementById("controls");
        if (fresh && current) {
          var hadFocus = current.contains(document.activeElement);
          current.replaceWith(fresh);
          if (window.htmx) { window.htmx.process(fresh); }
          if (hadFocus) {
            var first = fresh.querySelector("button, a, input");
            if (first) { first.focus(); }
          }
        }
      })
      .catch(function () { /* the next event tries again */ });
  }

  function connectDashboard() {
    var dashboard = document.getElementById("dashboard");
    if (!dashboard || dashboardSource || !window.EventSource) { return; }
    dashboardElement = dashboard;
    dashboardSource = new EventSource(dashboard.getAttribute("data-live"));
    dashboardSource.onmessage = function (event) {
      var data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      var figures = document.getElementById("figures");
      if (figures && data.figures !== lastFigures) {
        lastFigures = data.figures;
        figures.innerHTML = data.figures;
      }
      var controls = document.getElementById("controls");
      var board = document.getElementById("dashboard");
      if (controls && board && controls.getAttribute("data-for-state") !== data.state) {
        refreshControls(board);
      }
    };
  }

  function connectFeed() {
    var feed = document.getElementById("feed");
    if (!feed || feedSource || !window.EventSource) { return; }
    feedSource = new EventSource(feed.getAttribute("data-feed"));
    feedSource.onmessage = function (event) {
      var data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      var holder = document.createElement("ul");
      holder.innerHTML = data.rows;
      var rows = Array.prototype.slice.call(holder.children);
      rows.forEach(function (row) {
        if (!feed.querySelector('[data-event="' + row.getAttribute("data-event") + '"]')) {
          feed.insertBefore(row, feed.firstChild);
        }
      });
      var empty = document.getElementById("feed-empty");
      if (empty && rows.length) { empty.remove(); }
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    connectDashboard();
    connectFeed();
  });
  document.addEventListener("htmx:afterSwap", function () {
    if (dashboardSource && !document.body.contains(dashboardElement)) {
      /* The swapped-in figures and controls may be older than the stream's last message (a
         preparation that finished while the page was rendered), or the campaign may change again
         before the stream looks; the stream only sends what changed since its last message, so a
         new one starts with the campaign as it is now. */
      swaps += 1;
      dashboardSource.close();
      dashboardSource = null;
      lastFigures = null;
      connectDashboard();
    }
    if (document.activeElement === document.body) {
      var target = document.querySelector("#controls [autofocus], #controls button, #dashboard h1, #task-range");
      if (target) {
        if (!target.hasAttribute("tabindex") && target.tagName === "H1") { target.setAttribute("tabindex", "-1"); }
        target.focus();
      }
    }
  });
})();
