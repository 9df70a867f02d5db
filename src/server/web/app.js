// rotor's checkout page: the copy button and the countdowns. Loaded from /static (the
// Content-Security-Policy allows no inline script); the page works without it, less handily.
"use strict";

(function () {
  // "1h 04m 09s" from milliseconds.
  function remaining(ms) {
    var total = Math.max(0, Math.floor(ms / 1000));
    var h = Math.floor(total / 3600);
    var m = Math.floor((total % 3600) / 60);
    var s = total % 60;
    var two = function (n) { return (n < 10 ? "0" : "") + n; };
    if (h > 0) {
      return h + "h " + two(m) + "m " + two(s) + "s";
    }
    return m + "m " + two(s) + "s";
  }

  function startCountdown(el) {
    var endsAt = Date.parse(el.getAttribute("data-ends-at"));
    if (isNaN(endsAt)) {
      return;
    }
    var over = el.getAttribute("data-over") || "time is up";
    var tick = function () {
      var left = endsAt - Date.now();
      if (left <= 0) {
        el.textContent = over;
        return false;
      }
      el.textContent = remaining(left);
      return true;
    };
    if (tick()) {
      var timer = window.setInterval(function () {
        if (!tick()) {
          window.clearInterval(timer);
        }
      }, 1000);
    }
  }

  function say(statusId, text) {
    var status = statusId ? document.getElementById(statusId) : null;
    if (status) {
      status.textContent = text;
    }
  }

  // Copies without the Clipboard API where it is missing or refused (plain HTTP on a
  // closed network is not a secure context): select the field and ask the browser.
  function fallbackCopy(field) {
    field.focus();
    field.select();
    try {
      return document.execCommand("copy");
    } catch (e) {
      return false;
    }
  }

  function wireCopy(button) {
    button.addEventListener("click", function () {
      var field = document.getElementById(button.getAttribute("data-copy"));
      var statusId = button.getAttribute("data-status");
      if (!field) {
        return;
      }
      var done = function () { say(statusId, "Copied. Paste it where you need it."); };
      var failed = function () {
        if (fallbackCopy(field)) {
          done();
        } else {
          say(statusId, "Copying did not work here: the secret is selected, press Ctrl+C.");
        }
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(done, failed);
      } else {
        failed();
      }
    });
  }

  // A message after an action rides in the query (`?m=...`): shown once, then dropped from
  // the address so a reload shows the page as it is now.
  function dropMessage() {
    if (window.location.search.indexOf("m=") !== -1 && window.history.replaceState) {
      window.history.replaceState(null, "", window.location.pathname);
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    dropMessage();
    Array.prototype.forEach.call(document.querySelectorAll("[data-ends-at]"), startCountdown);
    Array.prototype.forEach.call(document.querySelectorAll("button[data-copy]"), wireCopy);
  });
})();
