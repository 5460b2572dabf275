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
