// The panel's forms and buttons that change something: each is sent to the JSON API by
// Kenshin.api (the session cookie and its CSRF token), so roles, validation and the audit
// log are the API's. No page logic here, only what the markup says:
//
//   <form class="api-form" data-api="/api/v1/users" data-method="POST" data-then="reload">
//     fields: an empty one is left out (data-empty="null": sent as null); data-type="int"
//     or "number" (sent as a JSON number), "bool" (a checkbox), "list" (checkboxes of one name), "json" (a textarea)
//   <button class="api-action" data-api="..." data-method="DELETE" data-confirm="...">
//
// data-then: "reload" (default), "show" (fill the form's [data-field] elements from the
// answer: a key shown once), or a URL with {id} for the answer's id. Errors appear in the
// form's (or the button's row's) .form-error, in the page's language with the API's reason.
"use strict";

(() => {
  const messages = Kenshin.readJSON("form-messages") || {};

  function value(field) {
    const type = field.dataset.type;
    if (type === "bool") return field.checked;
    const text = field.value.trim();
    if (text === "") return field.dataset.empty === "null" ? null : undefined;
    if (type === "int" || type === "number") return Number(text);
    if (type === "json") return JSON.parse(text);
    return field.value;
  }

  function body(form) {
    const out = {};
    for (const field of form.querySelectorAll("[name]")) {
      if (field.disabled) continue;
      if (field.dataset.type === "list") {
        out[field.name] = out[field.name] || [];
        if (field.checked) out[field.name].push(field.value);
        continue;
      }
      if ((field.type === "radio") && !field.checked) continue;
      const v = value(field);
      if (v !== undefined) out[field.name] = v;
    }
    return out;
  }

  function showError(where, error) {
    const box = where.querySelector(".form-error") || where.closest("tr, li, section")?.querySelector(".form-error");
    const text = error instanceof SyntaxError
      ? messages["form.bad_json"]
      : Kenshin.message(messages, "form.failed", { reason: error.message });
    if (box) {
      box.textContent = text;
      box.hidden = false;
    } else {
      alert(text);
    }
  }

  function then(element, answer) {
    const next = element.dataset.then || "reload";
    if (next === "reload") {
      location.reload();
    } else if (next === "show") {
      for (const out of element.querySelectorAll("[data-field]")) {
        out.textContent = answer[out.dataset.field];
      }
      element.querySelector(".form-result").hidden = false;
    } else {
      location.href = next.replace("{id}", answer.id);
    }
  }

  async function send(element, payload) {
    const error = element.querySelector(".form-error");
    if (error) error.hidden = true;
    if (element.dataset.confirm && !confirm(element.dataset.confirm)) return;
    const buttons = element.tagName === "BUTTON" ? [element] : element.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const options = { method: element.dataset.method || "POST" };
      if (payload !== undefined) options.body = JSON.stringify(payload);
      then(element, await Kenshin.api(element.dataset.api, options));
    } catch (err) {
      showError(element, err);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  for (const form of document.querySelectorAll("form.api-form")) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      let payload;
      try {
        payload = body(form);
      } catch (err) {
        showError(form, err);
        return;
      }
      send(form, payload);
    });
  }
  for (const button of document.querySelectorAll("button.api-action")) {
    button.addEventListener("click", () => send(button, undefined));
  }
})();
