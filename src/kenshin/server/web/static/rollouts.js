// Rollouts: the fleet's version distribution as a donut, and on one rollout's page the
// operator's moves (advance, pause, resume, abort) through the JSON API, then a reload.
"use strict";

(() => {
  const client = Kenshin.readJSON("client");
  const say = (key, values) => Kenshin.message(client.messages, key, values);
  const donut = document.getElementById("version-donut");
  if (donut && client.versions.length) {
    const trace = {
      type: "pie", hole: 0.55, sort: false, direction: "clockwise",
      labels: client.versions.map((v) =>
        (v.version === null ? say("rollouts.unknown_version") : v.version)),
      values: client.versions.map((v) => v.gateways),
      textinfo: "label+percent",
      hovertemplate: `%{label}: %{value} ${say("rollouts.gateways_unit")}<extra></extra>`,
    };
    const layout = {
      height: 280, margin: { t: 10, r: 10, b: 10, l: 10 }, showlegend: true,
      paper_bgcolor: "rgba(0,0,0,0)", legend: { orientation: "h", y: -0.05 },
    };
    Plotly.newPlot(donut, [trace], layout, { displayModeBar: false, responsive: true })
      .then(() => { document.body.dataset.drawn = "1"; });
  } else {
    document.body.dataset.drawn = "1";
  }

  const failed = document.getElementById("action-failed");
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button || client.rollout_id === undefined) return;
    const action = button.dataset.action;
    if (action === "abort" && !window.confirm(say("rollouts.abort_confirm"))) return;
    button.disabled = true;
    try {
      await Kenshin.api(`${client.api}${client.rollout_id}/${action}`, { method: "POST" });
      location.reload();
    } catch (error) {
      failed.textContent = `${say("rollouts.action_failed")} ${error.message}`;
      failed.hidden = false;
      button.disabled = false;
    }
  });
})();
