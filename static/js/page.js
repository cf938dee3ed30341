// Behaviour the pages declare with data attributes, so that no page needs an inline script
// or an on* handler: the Content-Security-Policy runs neither.
//   <select data-autosubmit>                         submits its form when changed
//   <select data-reveals="ID" data-reveals-when="V">  shows #ID while its value is V
//   <button data-copy="ID" aria-describedby="S">      copies #ID's text, says so in #S
(() => {
  "use strict";

  function reveal(select) {
    const target = document.getElementById(select.dataset.reveals);
    if (target) target.style.display = select.value === select.dataset.revealsWhen ? "" : "none";
  }

  document.addEventListener("change", (event) => {
    const el = event.target;
    if (!(el instanceof HTMLSelectElement)) return;
    if (el.hasAttribute("data-autosubmit") && el.form) el.form.submit();
    if (el.dataset.reveals) reveal(el);
  });

  document.addEventListener("click", (event) => {
    const button = event.target instanceof Element && event.target.closest("[data-copy]");
    if (!button) return;
    const text = document.getElementById(button.dataset.copy).textContent;
    const status = document.getElementById(button.getAttribute("aria-describedby"));
    const say = (message) => {
      if (status) status.textContent = message;
    };
    navigator.clipboard.writeText(text).then(
      () => say("Copied to the clipboard."),
      () => say("Copy failed: select the text and copy it by hand."),
    );
  });
})();
