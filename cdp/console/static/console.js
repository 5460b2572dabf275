// After "Load more", keyboard focus moves to the first item the page added, not to the top.
document.addEventListener("htmx:afterSettle", (event) => {
  const added = document.querySelector("[data-page-start]");
  if (added) {
    added.removeAttribute("data-page-start");
    added.focus();
  }
});
