// The gateway page: its status card and command list follow the gateway live (the
// server formats every text, in the reader's language and in JST: live.json), and, for
// operators, the command buttons post to the JSON API, which checks the role again.
"use strict";

(() => {
  const client = Kenshin.readJSON("client");
  const m = (key, values) => Kenshin.message(client.messages, key, values);
  const table = document.getElementById("command-rows");
  const notice = document.getElementById("command-message");
  const FAST_MS = 2000; // while a command runs
  const running = () => table.querySelector('tr[data-state="pending"], tr[data-state="sent"]');

  function text(id, value) {
    const element = document.getElementById(id);
    if (element && element.textContent !== value) element.textContent = value;
  }

  function showStatus(status) {
    const state = document.getElementById("state");
    state.className = `badge state-${status.state}`;
    text("state", status.state_label);
    text("last-seen", status.last_seen);
    text("last-good-read", status.last_good_read);
    document.getElementById("lqi-line").setAttribute("points", status.spark);
    text("lqi-range", status.lqi_range);
    const report = status.report;
    document.getElementById("status-facts").hidden = !report;
    document.getElementById("no-report").hidden = Boolean(report);
    if (!report) return;
    const link = document.getElementById("link");
    link.className = `badge ${report.link_class}`;
    link.dataset.link = report.link;
    text("link", report.link_label);
    text("lqi", report.lqi);
    text("uptime", report.uptime);
    text("reported-at", report.at);
    text("queue-depth", report.queue_depth);
    text("agent-version", report.agent_version);
    text("errors", report.errors);
  }

  function cell(value, className, label) {
    const td = Kenshin.cell(value, className);
    td.dataset.label = label;
    return td;
  }

  const labels = Object.fromEntries(
    [...table.closest("table").querySelectorAll("thead th")].map((th, i) => [i, th.textContent]),
  );

  function showCommand(command) {
    let tr = table.querySelector(`tr[data-command-id="${command.id}"]`);
    const fresh = !tr;
    if (fresh) tr = document.createElement("tr");
    tr.dataset.commandId = command.id;
    tr.dataset.state = command.state;
    tr.replaceChildren(
      cell(command.created, "nowrap", labels[0]),
      cell(command.name, "", labels[1]),
      cell(command.args, "", labels[2]),
      cell(command.state_label, "state", labels[3]),
      cell(command.result, "result", labels[4]),
      cell(command.done, "nowrap done", labels[5]),
    );
    if (fresh) table.prepend(tr);
  }

  let timer = null;
  async function refresh() {
    clearTimeout(timer);
    try {
      const live = await Kenshin.api(client.live);
      showStatus(live.status);
      for (const command of [...live.commands].reverse()) showCommand(command);
      document.getElementById("no-commands").hidden = live.commands.length > 0;
      const leases = document.getElementById("leases");
      leases.textContent = live.leases;
      leases.hidden = !live.leases;
    } catch (error) {
      // a network hiccup: the next round tries again
    }
    timer = setTimeout(refresh, running() ? FAST_MS : client.refresh_s * 1000);
  }
  timer = setTimeout(refresh, client.refresh_s * 1000);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refresh();
  });

  function args(name, form) {
    const data = new FormData(form);
    if (name === "read_property") return { epc: data.get("epc") };
    if (name === "backfill") {
      const to = Math.floor(Date.now() / 1000);
      return { from_s: to - Number(data.get("hours")) * 3600, to_s: to };
    }
    return {};
  }

  function say(value, failed) {
    notice.textContent = value;
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
        await Kenshin.api(client.api, {
          method: "POST",
          body: JSON.stringify({ name, args: args(name, form) }),
        });
        say(m("command.queued"), false);
        await refresh();
      } catch (error) {
        say(m("command.refused", { detail: error.message }), true);
      } finally {
        button.disabled = false;
      }
    });
  }
})();
