// A table wider than its box (a phone's screen) scrolls in it: say so above it, and let the
// keyboard reach it to scroll; again whenever the window or the page's content changes.
function markWide() {
  const hint = document.body.dataset.scrollHint || "";
  for (const box of document.querySelectorAll(".scroll")) {
    const wide = box.scrollWidth > box.clientWidth + 1;
    box.classList.toggle("wide", wide);
    if (wide) {
      box.tabIndex = 0;
    } else {
      box.removeAttribute("tabindex");
    }
    let note = box.previousElementSibling;
    if (!note || !note.classList.contains("scroll-hint")) {
      if (!wide) continue;
      note = document.createElement("p");
      note.className = "scroll-hint";
      note.textContent = hint;
      box.before(note);
    }
    note.hidden = !wide;
  }
}
document.addEventListener("DOMContentLoaded", markWide);
window.addEventListener("resize", markWide);
document.addEventListener("htmx:afterSettle", markWide);

// After "Load more", keyboard focus moves to the first item the page added, not to the top.
document.addEventListener("htmx:afterSettle", (event) => {
  const added = document.querySelector("[data-page-start]");
  if (added) {
    added.removeAttribute("data-page-start");
    added.focus();
  }
});

// Who is waiting now (#waiting) follows the log without a reload. The server says
// "changed" on the list's live stream (data-live, Server-Sent Events, signed in with the
// console's cookie) whenever webhooks are logged, and the list is asked again (htmx, its
// "refresh" trigger), at most once a second. It is asked again too when it says it will
// next change with time alone (data-changes-at: a wait passing 80% or all of its target, a
// session going idle), and each wait's length ticks every second meanwhile. A browser that
// cannot hold the stream (no EventSource, or the server refused it) asks every 5 seconds.
(() => {
  const POLL_MS = 5000;
  const LEAST_GAP_MS = 1000;
  const LONGEST_TIMER_MS = 2147483647;
  let stream = null;
  let polling = null;
  let due = null;
  let pending = null;
  let asked = 0;
  let skew = 0; // the server's clock less this browser's, as the list was drawn

  const list = () => document.getElementById("waiting");

  function refresh() {
    const box = list();
    if (!box || !window.htmx) return;
    const wait = asked + LEAST_GAP_MS - Date.now();
    if (wait > 0) {
      if (!pending) {
        pending = setTimeout(() => {
          pending = null;
          refresh();
        }, wait);
      }
      return;
    }
    asked = Date.now();
    window.htmx.trigger(box, "refresh");
  }

  // A length of time in its two largest units, as the server writes it (render.duration).
  function duration(seconds, units) {
    const left = Math.max(0, Math.round(seconds));
    const parts = [
      [Math.floor(left / 86400), units[0]],
      [Math.floor((left % 86400) / 3600), units[1]],
      [Math.floor((left % 3600) / 60), units[2]],
      [left % 60, units[3]],
    ];
    while (parts.length > 1 && parts[0][0] === 0) parts.shift();
    const shown = parts.slice(0, 2);
    if (shown.length === 2 && shown[1][0] === 0) shown.pop();
    return shown.map(([value, unit]) => `${value} ${unit}`).join(" ");
  }

  function tick() {
    const box = list();
    if (!box) return;
    const units = (box.dataset.units || "d h min s").split(" ");
    const now = Date.now() + skew;
    for (const shown of box.querySelectorAll(".ticking[data-since]")) {
      shown.textContent = duration((now - Number(shown.dataset.since)) / 1000, units);
    }
  }

  // Each time the list is drawn: the clocks compared, and its next change with time set.
  function drawn() {
    const box = list();
    if (!box) return;
    const now = Number(box.dataset.now);
    skew = now - Date.now();
    clearTimeout(due);
    due = null;
    const changes = Number(box.dataset.changesAt);
    if (changes) {
      // A little after it, so that the server's clock has passed it too.
      due = setTimeout(refresh, Math.min(Math.max(changes - now, 0) + 250, LONGEST_TIMER_MS));
    }
    tick();
  }

  function poll() {
    if (!polling) polling = setInterval(refresh, POLL_MS);
  }

  function listen() {
    const box = list();
    if (!box || stream) return;
    if (!window.EventSource) {
      poll();
      return;
    }
    let opened = false;
    const source = new EventSource(box.dataset.live);
    stream = source;
    source.addEventListener("changed", refresh);
    source.addEventListener("open", () => {
      if (opened) refresh(); // connected again: whatever came meanwhile
      opened = true;
      clearInterval(polling);
      polling = null;
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED && stream === source) {
        stream = null;
        poll();
      }
    });
  }

  function quiet() {
    if (stream) {
      stream.close();
      stream = null;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (!list()) return;
    drawn();
    listen();
    setInterval(tick, 1000);
  });
  document.addEventListener("htmx:afterSettle", drawn);
  // A hidden tab lets its stream go (a browser holds few connections to one host), and
  // catches up when it is seen again.
  document.addEventListener("visibilitychange", () => {
    if (!list()) return;
    if (document.hidden) {
      quiet();
    } else {
      listen();
      refresh();
    }
  });
})();
