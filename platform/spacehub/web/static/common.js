// spacehub: small helpers every page uses (no framework, no build step).
(function () {
  "use strict";
  const spacehub = (window.spacehub = window.spacehub || {});

  spacehub.csrf = function () {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  };

  spacehub.copyText = function (text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    const area = document.createElement("textarea");
    area.value = text;
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
    return Promise.resolve();
  };

  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-copy], [data-copy-next]");
    if (!button) return;
    const source = button.dataset.copy ? document.querySelector(button.dataset.copy) : button.nextElementSibling;
    if (!source) return;
    spacehub.copyText(source.textContent.trim() + "\n").then(function () {
      const label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    });
  });

  // Forms that change something irreversible ask first.
  document.addEventListener("submit", function (event) {
    const form = event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
  });

  // The account menu closes when clicking elsewhere.
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.removeAttribute("open");
    });
  });
})();
