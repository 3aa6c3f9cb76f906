// The retailer view: the day's plan, forecast band, actual and projected imbalance in one
// chart, the slots past the threshold in a table, and (operators) the plan upload, after
// which the day is read again from the JSON API and drawn again.
"use strict";

(() => {
  const client = Kenshin.readJSON("client");
  const lang = client.lang;
  const m = (key, values) => Kenshin.message(client.messages, key, values);
  const SLOT_MS = 30 * 60 * 1000;
  const chart = document.getElementById("chart");
  const kwh = (wh) => (wh === null || wh === undefined ? null : wh / 1000);
  const none = "—";

  const slotTime = (start) => Kenshin.clock(start).slice(0, 5);
  const slotLabel = (start) => `${slotTime(start)}–${slotTime(Date.parse(start) + SLOT_MS)}`;
  const signedKwh = (wh) => `${wh > 0 ? "+" : ""}${Kenshin.kwh(wh, lang)}`;
  const sum = (values) => values.reduce((total, v) => total + v, 0);

  function traces(slots) {
    const x = slots.map((slot) => slot.start);
    const now = Date.now();
    // Still to come: the projection there is the forecast's middle, not an actual.
    const remaining = slots.map((slot) => Date.parse(slot.start) + SLOT_MS > now);
    // Each value is a half hour's energy: drawn as a step over its slot.
    const line = (uid, name, key, style) => ({
      uid, name, x, type: "scatter", mode: "lines", y: slots.map((slot) => kwh(slot[key])),
      hovertemplate: `${name}: %{y:,.1f} kWh<extra></extra>`, ...style,
      line: { shape: "hv", ...style.line },
    });
    return [
      line("low", m("retail.trace_low"), "low_wh", {
        line: { width: 0 }, showlegend: false, hoverinfo: "skip", hovertemplate: undefined,
      }),
      line("high", m("retail.trace_band"), "high_wh", {
        line: { width: 0 }, fill: "tonexty", fillcolor: "rgba(70, 130, 200, 0.22)",
        hovertemplate: `${m("retail.trace_band")}: %{customdata:,.1f}–%{y:,.1f} kWh<extra></extra>`,
        customdata: slots.map((slot) => kwh(slot.low_wh)),
      }),
      line("mid", m("retail.trace_forecast"), "mid_wh", {
        line: { color: "#4682c8", dash: "dash", width: 2 },
      }),
      line("plan", m("retail.trace_plan"), "plan_wh", { line: { color: "#1f2d3d", width: 2 } }),
      line("actual", m("retail.trace_actual"), "actual_wh", {
        mode: "lines+markers", line: { color: "#2e8b57", width: 3 }, marker: { size: 5 },
      }),
      {
        uid: "imbalance", name: m("retail.trace_imbalance"), type: "bar", x, yaxis: "y2",
        y: slots.map((slot, i) => (remaining[i] ? kwh(slot.imbalance_wh) : null)),
        marker: { color: slots.map((slot) => (slot.at_risk ? "#d0453c" : "#8f9ba8")) },
        xperiod: SLOT_MS, xperiodalignment: "middle",
        hovertemplate: `${m("retail.trace_imbalance")}: %{y:+,.2f} kWh<extra></extra>`,
      },
    ];
  }

  // The day's energy above; the projected imbalance in its own band below, same time axis.
  // Each axis in one unit chosen by its magnitude (Kenshin.valueAxis); on a phone the
  // ticks carry the unit and the titles give way.
  function layout(outlook) {
    const energy = ["low_wh", "high_wh", "mid_wh", "plan_wh", "actual_wh"]
      .flatMap((key) => outlook.slots.map((slot) => kwh(slot[key])));
    const narrow = Kenshin.narrow();
    return {
      height: 480, margin: { t: 10, r: 20, b: 40, l: 70 },
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
      hovermode: "x unified",
      legend: { orientation: "h", y: -0.12 },
      xaxis: {
        ...Kenshin.timeAxis("hour", outlook.day, 24, chart.clientWidth - 90, lang),
        anchor: "y2", fixedrange: true,
      },
      yaxis: {
        domain: [0.34, 1], title: { text: narrow ? "" : m("retail.axis_energy") },
        ...Kenshin.valueAxis(energy, "kWh", lang).layout,
      },
      yaxis2: {
        domain: [0, 0.26], title: { text: narrow ? "" : m("retail.axis_imbalance") }, zeroline: true,
        zerolinecolor: "#6b7785",
        ...Kenshin.valueAxis(outlook.slots.map((slot) => kwh(slot.imbalance_wh)), "kWh", lang, { ticks: 2 }).layout,
      },
    };
  }

  function figures(slots) {
    const known = (key) => slots.map((slot) => slot[key]).filter((v) => v !== null);
    const show = (id, values) => {
      document.getElementById(id).textContent = values.length ? Kenshin.kwh(sum(values), lang) : none;
    };
    show("plan-total", known("plan_wh"));
    show("actual-total", known("actual_wh"));
    show("projected-total", known("projected_wh"));
    const atRisk = slots.filter((slot) => slot.at_risk).length;
    document.getElementById("at-risk-count").textContent = m("retail.slots_unit", {
      count: Kenshin.number(atRisk, lang),
    });
  }

  function table(outlook) {
    const pct = outlook.threshold_pct;
    const title = document.getElementById("at-risk-title");
    const empty = document.getElementById("at-risk-none");
    title.textContent = m("retail.at_risk_title", { pct: Kenshin.number(pct, lang, 1) });
    const rows = outlook.slots.filter((slot) => slot.at_risk).map((slot) => {
      const tr = document.createElement("tr");
      tr.dataset.start = slot.start;
      tr.className = "sev-warning";
      const request = slot.imbalance_wh > 0 ? "energy_saving" : "demand_up";
      tr.append(
        Kenshin.cell(slotLabel(slot.start), "nowrap"),
        Kenshin.cell(Kenshin.kwh(slot.plan_wh, lang), "num plan"),
        Kenshin.cell(Kenshin.kwh(slot.projected_wh, lang), "num projected"),
        Kenshin.cell(signedKwh(slot.imbalance_wh), "num imbalance"),
        Kenshin.cell(`${slot.deviation_pct > 0 ? "+" : ""}${Kenshin.number(slot.deviation_pct, lang, 1)} %`,
          "num deviation"),
        Kenshin.cell(m(`retail.request_${request}`), "request"),
      );
      return tr;
    });
    document.getElementById("at-risk-rows").replaceChildren(...rows);
    empty.textContent = pct > 0 ? m("retail.at_risk_none") : m("retail.threshold_off");
    empty.hidden = rows.length > 0;
    raiseLink(outlook);
  }

  // Operators: the first run of slots still to come projected over the plan past the
  // threshold, as a link to the DR page's form filled in with them, each slot's target
  // its projected imbalance as power (Wh × 2, the half hour's mean).
  function raiseLink(outlook) {
    const box = document.getElementById("raise-dr");
    if (!box) return;
    const slots = outlook.slots;  // the day's 48, from 00:00: an index is the slot number
    const now = Date.now();
    const over = (slot) => slot.at_risk && slot.imbalance_wh > 0 && Date.parse(slot.start) > now;
    const first = slots.findIndex(over);
    box.hidden = first < 0;
    if (first < 0) return;
    let last = first;
    while (last + 1 < slots.length && over(slots[last + 1])) last += 1;
    const kw = slots.slice(first, last + 1).map((slot) => ((slot.imbalance_wh * 2) / 1000).toFixed(3));
    const query = new URLSearchParams({ date: outlook.day, start: first, end: last + 1, kw });
    const link = box.querySelector("a");
    link.href = `/dr?${query}`;
    const span = `${slotTime(slots[first].start)}–${slotTime(Date.parse(slots[last].start) + SLOT_MS)}`;
    link.textContent = m("retail.raise_dr", { slots: span });
  }

  function draw(outlook) {
    const slots = outlook.slots;
    const anything = slots.some((s) => s.plan_wh !== null || s.mid_wh !== null || s.actual_wh !== null);
    document.getElementById("no-data").hidden = anything;
    Plotly.react(chart, traces(slots), layout(outlook), { displayModeBar: false, responsive: true })
      .then(() => Kenshin.fitTimeAxis(chart, "hour", outlook.day, 24, lang))
      .then(() => { document.body.dataset.drawn = String(Number(document.body.dataset.drawn || 0) + 1); });
    figures(slots);
    table(outlook);
  }

  async function reload() {
    const failed = document.getElementById("load-failed");
    try {
      const outlook = await Kenshin.api(`${client.imbalance_api}?day=${client.outlook.day}`);
      client.outlook = outlook;
      failed.hidden = true;
      draw(outlook);
    } catch (error) {
      failed.textContent = m("retail.load_failed", { detail: error.message });
      failed.hidden = false;
    }
  }

  draw(client.outlook);

  // The plan upload (operators and administrators: only they get the form).
  const form = document.getElementById("plan-form");
  if (form) {
    const notice = document.getElementById("plan-message");
    const say = (text, failed) => {
      notice.textContent = text;
      notice.classList.toggle("error", failed);
      notice.hidden = false;
    };
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const file = document.getElementById("plan-file").files[0];
      if (!file) {
        say(m("retail.upload_no_file"), true);
        return;
      }
      const button = form.querySelector("button");
      button.disabled = true;
      try {
        // The file's own bytes: the server checks the encoding and names a bad line.
        const stored = await Kenshin.api(client.plan_api, {
          method: "PUT",
          body: file,
          headers: { Accept: "application/json", "Content-Type": "text/csv" },
        });
        say(m("retail.upload_done", { slots: Kenshin.number(stored.slots, lang) }), false);
        await reload();
      } catch (error) {
        say(m("retail.upload_refused", { detail: error.message }), true);
      } finally {
        button.disabled = false;
      }
    });
  }
})();
