// The gateway page's command buttons (operators only): each posts to the JSON API, which
// checks the role again, and the new command's row follows its state until it is done.
"use strict";

(() => {
  const client = Kenshin.readJSON("client");
  const lang = client.lang;
  const m = (key, values) => Kenshin.message(client.messages, key, values);
  const table = document.getElementById("command-rows");
  const notice = document.getElementById("command-message");
  const POLL_MS = 2000;
  const POLL_FOR_MS = 5 * 60 * 1000;

  function args(name, form) {
    const data = new FormData(form);
    if (name === "read_property") return { epc: data.get("epc") };
    if (name === "backfill") {
      const to = Math.floor(Date.now() / 1000);
      return { from_s: to - Number(data.get("hours")) * 3600, to_s: to };
    }
    return {};
  }

  function show(command) {
    let tr = table.querySelector(`tr[data-command-id="${command.id}"]`);
    const fresh = !tr;
    if (fresh) tr = document.createElement("tr");
    tr.dataset.commandId = command.id;
    tr.dataset.state = command.state;
    const result = command.error || (command.result ? JSON.stringify(command.result) : "");
    tr.replaceChildren(
      Kenshin.cell(Kenshin.datetime(command.created_at, lang), "nowrap"),
      Kenshin.cell(m(`command.${command.name}`)),
      Kenshin.cell(Object.keys(command.args || {}).length ? JSON.stringify(command.args) : ""),
      Kenshin.cell(m(`command_state.${command.state}`), "state"),
      Kenshin.cell(result, "result"),
      Kenshin.cell(command.done_at ? Kenshin.datetime(command.done_at, lang) : "", "nowrap done"),
    );
    if (fresh) table.prepend(tr);
    document.getElementById("no-commands")?.remove();
  }

  function follow(command, since = Date.now()) {
    if (!["pending", "sent"].includes(command.state) || Date.now() - since > POLL_FOR_MS) return;
    setTimeout(async () => {
      try {
        const now = await Kenshin.api(client.command_api + command.id);
        show(now);
        follow(now, since);
      } catch (error) {
        follow(command, since);
      }
    }, POLL_MS);
  }

  function say(text, failed) {
    notice.textContent = text;
    notice.classList.toggle("error", failed);
    notice.hidden = false;
  }

  for (const form of document.querySelectorAll("form[data-command]")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
      const name = form.dataset.command;
      const button = form.querySelector("button");
      button.disabled = true;
      try {
        const command = await Kenshin.api(client.api, {
          method: "POST",
          body: JSON.stringify({ name, args: args(name, form) }),
        });
        show(command);
        say(m("command.queued"), false);
        follow(command);
      } catch (error) {
        say(m("command.refused", { detail: error.message }), true);
      } finally {
        button.disabled = false;
      }
    });
  }
})();
