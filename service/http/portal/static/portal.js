// The portal works without this file; it only makes a few things quicker. No inline
// script anywhere: the Content-Security-Policy allows scripts from this origin only.
"use strict";
document.documentElement.classList.add("js");

document.addEventListener("DOMContentLoaded", function () {
  // A secret shown once gets a button that copies it.
  document.querySelectorAll("[data-copy]").forEach(function (element) {
    if (!navigator.clipboard) { return; }
    var button = document.createElement("button");
    button.type = "button";
    button.className = "secondary";
    button.textContent = "Copy";
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(element.textContent.trim()).then(function () {
        button.textContent = "Copied";
      });
    });
    element.insertAdjacentElement("afterend", button);
  });

  // Ask before what cannot be undone at a click.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
    });
  });

  // Times in the reader's own zone (the page says UTC without JS).
  document.querySelectorAll("time[datetime]").forEach(function (element) {
    var moment = new Date(element.getAttribute("datetime"));
    if (!isNaN(moment)) {
      element.title = element.textContent;
      element.textContent = moment.toLocaleString();
    }
  });

  // A pending delivery's page looks again until it is done.
  var pending = document.querySelector("[data-refresh]");
  if (pending) {
    window.setTimeout(function () { window.location.reload(); }, 1000 * Number(pending.dataset.refresh));
  }
});
