// Alerts: acknowledge or resolve through the JSON API, then show the row's new state.
"use strict";

(() => {
  const client = Kenshin.readJSON("client");
  const failed = document.getElementById("action-failed");
  const say = (key) => Kenshin.message(client.messages, key);

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const row = button.closest("tr[data-alert-id]");
    const action = button.dataset.action;
    button.disabled = true;
    try {
      const alert = await Kenshin.api(`${client.api}${row.dataset.alertId}/${action}`, { method: "POST" });
      row.dataset.state = alert.state;
      row.querySelector(".alert-state").textContent = say(`alert_state.${alert.state}`);
      for (const b of row.querySelectorAll("button[data-action]")) {
        if (alert.state === "resolved" || b.dataset.action === "acknowledge") b.remove();
      }
      failed.hidden = true;
    } catch (error) {
      failed.textContent = `${say("alerts.action_failed")} ${error.message}`;
      failed.hidden = false;
      button.disabled = false;
    }
  });
})();
