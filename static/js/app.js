// The only script on the site (the CSP forbids inline ones). Everything works without it;
// it adds what htmx needs and moves focus so screen readers hear what changed.
(function () {
  "use strict";

  // htmx requests whose form carries no csrf_token field still need the token (SEC-1).
  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta && !("csrf_token" in event.detail.parameters)) {
      event.detail.headers["X-CSRFToken"] = meta.getAttribute("content");
    }
  });

  // After a swap, put focus on the first problem, or the new step's heading, so keyboard and
  // screen-reader users land where the page changed.
  document.addEventListener("htmx:afterSwap", function (event) {
    // Results swapped in while someone types or picks a filter (the users list's search)
    // leave the focus where it is, or every keystroke would lose it.
    var from = event.detail.requestConfig && event.detail.requestConfig.elt;
    if (from && from.closest && from.closest("[data-keep-focus]")) { return; }
    var root = event.detail.elt && event.detail.elt.isConnected ? event.detail.elt : document.getElementById("main");
    if (!root) { return; }
    var target = root.querySelector('[role="alert"], [aria-invalid="true"], h1, h2');
    if (target) {
      if (!target.hasAttribute("tabindex") && !/^(INPUT|SELECT|TEXTAREA|BUTTON|A)$/.test(target.tagName)) {
        target.setAttribute("tabindex", "-1");
      }
      target.focus();
    }
  });

  // "You can ask for a new code in N seconds": count down once a second ("1 second" at the
  // end). htmx swaps in the button itself when the wait is over; this only keeps the number
  // honest meanwhile.
  function startCountdowns(root) {
    root.querySelectorAll("[data-countdown]").forEach(function (el) {
      if (el.dataset.counting) { return; }
      el.dataset.counting = "1";
      var left = parseInt(el.getAttribute("data-countdown"), 10) || 0;
      var timer = window.setInterval(function () {
        left = Math.max(0, left - 1);
        el.textContent = left + (left === 1 ? " second" : " seconds");
        if (left === 0 || !el.isConnected) { window.clearInterval(timer); }
      }, 1000);
    });
  }
  document.addEventListener("DOMContentLoaded", function () { startCountdowns(document); });
  document.addEventListener("htmx:load", function (event) { startCountdowns(event.detail.elt); });

  // The recovery-codes print page: a button instead of asking people to find the menu.
  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("[data-print]")) {
      window.print();
    }
  });
})();
