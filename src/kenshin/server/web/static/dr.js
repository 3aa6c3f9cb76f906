// The DR pages. On /dr, the create form (operators): forms.js sends it to the JSON API;
// this script only keeps its derived fields, `start`, `end` and `targets_w`, in step with
// the date, the half hours and the kW typed for each slot, and pre-fills it from the
// query (?date=&start=&end=&kw=, the Demand page's link). On /dr/{id}, the chart of the
// tenant's target against its homes' baseline and actual, per half hour, in kW.
"use strict";

(() => {
  const client = Kenshin.readJSON("client");
  const lang = client.lang;
  const m = (key, values) => Kenshin.message(client.messages, key, values);
  const SLOT_MS = 30 * 60 * 1000;
  // The day's half hour `index` as a clock: 0 -> "00:00", 48 -> "24:00".
  const clock = (index) => `${String(Math.floor(index / 2)).padStart(2, "0")}:${index % 2 ? "30" : "00"}`;

  function createForm(form) {
    const field = (selector) => form.querySelector(selector);
    const [date, start, end, kind, every, slots] =
      ["#dr-date", "#dr-start", "#dr-end", "#dr-kind", "#dr-every", "#dr-slots"].map(field);
    const typed = [];  // kW by the day's half hour, kept while the span changes

    // A half hour of `day` as the API reads a time without an offset (JST); 48: the next
    // midnight.
    function at(day, index) {
      if (index < 48) return `${day}T${clock(index)}`;
      const next = new Date(`${day}T00:00:00Z`);
      next.setUTCDate(next.getUTCDate() + 1);
      return `${next.toISOString().slice(0, 10)}T00:00`;
    }

    function drawSlots() {
      const labels = [];
      for (let i = Number(start.value); i < Number(end.value); i += 1) {
        const label = document.createElement("label");
        label.textContent = `${clock(i)}–${clock(i + 1)}`;
        const input = document.createElement("input");
        Object.assign(input, { type: "number", min: "0", step: "0.001", required: true });
        input.inputMode = "decimal";
        input.dataset.slot = String(i);
        input.value = typed[i] ?? every.value;
        label.append(input);
        labels.push(label);
      }
      slots.replaceChildren(...labels);
    }

    function sync() {
      for (const part of form.querySelectorAll("[data-kind]")) {
        part.hidden = part.dataset.kind !== kind.value;
        for (const input of part.querySelectorAll("input, select")) input.disabled = part.hidden;
      }
      field("[name=start]").value = date.value ? at(date.value, Number(start.value)) : "";
      field("[name=end]").value = date.value ? at(date.value, Number(end.value)) : "";
      const targets = field("[name=targets_w]");
      targets.disabled = kind.value !== "targets";
      targets.value = JSON.stringify(
        [...slots.querySelectorAll("input")].map((input) => Math.round(Number(input.value) * 1000)));
    }

    const asked = new URLSearchParams(location.search);
    const choose = (select, value) => {
      if ([...select.options].some((option) => option.value === value)) select.value = value;
    };
    date.value = /^\d{4}-\d{2}-\d{2}$/.test(asked.get("date") || "") ? asked.get("date") : client.tomorrow;
    choose(start, asked.get("start"));
    choose(end, asked.get("end"));
    (asked.get("kw") || "").split(",").forEach((kw, k) => {
      if (kw !== "" && Number.isFinite(Number(kw))) typed[Number(start.value) + k] = kw;
    });

    form.addEventListener("input", (event) => {
      const target = event.target;
      if (target === every) {
        for (const input of slots.querySelectorAll("input")) {
          input.value = every.value;
          typed[Number(input.dataset.slot)] = every.value;
        }
      } else if (target.dataset.slot !== undefined) {
        typed[Number(target.dataset.slot)] = target.value;
      }
      if (target === start || target === end) drawSlots();
      sync();
    });
    form.addEventListener("change", sync);
    drawSlots();
    sync();
  }

  function chart(element) {
    const slots = client.slots;
    const kw = (wh) => (wh === null ? null : (wh * 2) / 1000);  // a half hour's mean power
    const x = slots.map((slot) => slot.start);
    const baseline = slots.map((slot) => kw(slot.baseline_wh));
    const actual = slots.map((slot) => kw(slot.actual_wh));
    // What the homes should stay under: their baseline less the tenant's target.
    const goal = slots.map((slot, i) =>
      (slot.target_w === null || baseline[i] === null ? null : baseline[i] - slot.target_w / 1000));
    const axis = Kenshin.valueAxis([...baseline, ...actual, ...goal], "kW", lang);
    const hover = (name) => `${name}: %{y:,.3f} kW<extra></extra>`;
    const bar = (uid, name, y, color) => ({
      uid, name, x, y, type: "bar", marker: { color }, hovertemplate: hover(name),
      xperiod: SLOT_MS, xperiodalignment: "middle",
    });
    const traces = [
      bar("baseline", m("dr.trace_baseline"), baseline, "#aab4bf"),
      bar("actual", m("dr.trace_actual"), actual, "#2e8b57"),
    ];
    if (slots.some((slot) => slot.target_w !== null)) {
      traces.push({
        uid: "goal", name: m("dr.trace_goal"), x, y: goal, type: "scatter", mode: "markers",
        marker: { symbol: "line-ew", size: 26, line: { width: 3, color: "#d0453c" } },
        hovertemplate: hover(m("dr.trace_goal")), xperiod: SLOT_MS, xperiodalignment: "middle",
      });
    }
    const first = `${x[0].slice(0, 10)} ${x[0].slice(11, 16)}`;
    const hours = Math.max(1, Math.ceil(slots.length / 2));
    const layout = {
      height: 360, margin: { t: 10, r: 20, b: 40, l: 70 }, barmode: "group", bargap: 0.3,
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", hovermode: "x unified",
      legend: { orientation: "h", y: -0.15 },
      xaxis: { ...Kenshin.timeAxis("hour", first, hours, element.clientWidth - 90, lang), fixedrange: true },
      yaxis: { title: { text: Kenshin.narrow() ? "" : m("dr.axis_power") }, ...axis.layout },
    };
    document.getElementById("dr-no-baseline").hidden = baseline.some((v) => v !== null);
    Plotly.newPlot(element, traces, layout, { displayModeBar: false, responsive: true })
      .then(() => Kenshin.fitTimeAxis(element, "hour", first, hours, lang))
      .then(() => { document.body.dataset.drawn = "1"; });
  }

  const form = document.getElementById("dr-form");
  if (form) createForm(form);
  const element = document.getElementById("dr-chart");
  if (element) chart(element);
})();
