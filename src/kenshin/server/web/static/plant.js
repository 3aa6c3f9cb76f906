// One plant: its sold energy per hour / day / month (with the day's weather beside the
// hourly view when the server has a weather source), its daily 30-minute sold demand over
// the month, and (operators) a new sale price. Everything is read from the JSON API.
"use strict";

(() => {
  const client = Kenshin.readJSON("client");
  const lang = client.lang;
  const m = (key, values) => Kenshin.message(client.messages, key, values);
  const config = { displayModeBar: false, responsive: true };
  const base = {
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    hovermode: "x unified", legend: { orientation: "h", y: -0.18 },
  };
  const TICKS = {
    hour: { tickformat: "%H:%M", hoverformat: "%H:%M" },
    day: { tickformat: lang === "ja" ? "%-m/%-d" : "%b %-d", hoverformat: "%Y-%m-%d" },
    month: { tickformat: lang === "ja" ? "%Y年%-m月" : "%b %Y", hoverformat: "%Y-%m" },
  };
  const PERIOD_MS = { hour: 3600e3, day: 86400e3, month: 0 };

  function fail(error) {
    const element = document.getElementById("load-failed");
    element.textContent = m("plant.load_failed", { detail: error.message });
    element.hidden = false;
  }

  const query = (params) => new URLSearchParams(params).toString();

  async function weather() {
    const note = document.getElementById("weather-note");
    if (client.view !== "hour" || !client.weather_api) return [];
    try {
      const hours = await Kenshin.api(`${client.weather_api}?${query({ day: client.first })}`);
      if (!hours.length) {
        note.textContent = m("plant.weather_none");
        note.hidden = false;
      }
      return hours;
    } catch (error) {
      note.textContent = m("plant.weather_failed", { detail: error.message });
      note.hidden = false;
      return [];
    }
  }

  async function energy() {
    const view = client.view;
    const [series, hours] = await Promise.all([
      Kenshin.api(`${client.energy_api}?${query({
        period: view, from: client.first, to: client.last, direction: "reverse",
      })}`),
      weather(),
    ]);
    const traces = [{
      uid: "sold", name: m("plant.trace_sold"), type: "bar", marker: { color: "#e0a526" },
      x: series.values.map((v) => v.start),
      y: series.values.map((v) => (v.wh === null ? null : v.wh / 1000)),
      hovertemplate: `${m("plant.trace_sold")}: %{y:,.1f} kWh<extra></extra>`,
      ...(PERIOD_MS[view] ? { xperiod: PERIOD_MS[view], xperiodalignment: "middle" } : {}),
    }];
    const layout = {
      ...base, height: 380, margin: { t: 10, r: 20, b: 40, l: 60 },
      xaxis: { type: "date", ...TICKS[view] },
      yaxis: { title: { text: m("plant.axis_kwh") }, rangemode: "tozero", separatethousands: true },
    };
    if (hours.length) {
      const x = hours.map((h) => h.at);
      traces.push({
        uid: "irradiance", name: m("plant.trace_irradiance"), type: "scatter", mode: "lines",
        x, y: hours.map((h) => h.irradiance_w_m2), yaxis: "y2", line: { color: "#d0453c", shape: "spline" },
        hovertemplate: `${m("plant.trace_irradiance")}: %{y:,.0f} W/m²<extra></extra>`,
        xperiod: 3600e3, xperiodalignment: "middle",
      }, {
        uid: "temperature", name: m("plant.trace_temperature"), type: "scatter", mode: "lines+markers",
        x, y: hours.map((h) => h.temperature_c), yaxis: "y3",
        line: { color: "#4682c8", dash: "dot" }, marker: { size: 4 },
        hovertemplate: `${m("plant.trace_temperature")}: %{y:.1f} ${m("plant.axis_temperature")}<extra></extra>`,
        xperiod: 3600e3, xperiodalignment: "middle",
      });
      layout.margin.r = 10;
      layout.xaxis.domain = [0, 0.86];
      layout.yaxis2 = {
        title: { text: m("plant.axis_irradiance") }, overlaying: "y", side: "right",
        rangemode: "tozero", showgrid: false, anchor: "x", tickformat: ",.0f",
      };
      layout.yaxis3 = {
        title: { text: m("plant.axis_temperature") }, overlaying: "y", side: "right",
        anchor: "free", position: 0.96, showgrid: false, tickformat: ".0f",
      };
    }
    Plotly.newPlot(document.getElementById("energy-chart"), traces, layout, config);
    document.getElementById("energy-total").textContent = m("plant.total", {
      kwh: Kenshin.kwh(series.total_wh, lang),
    });
    document.body.dataset.energy = "drawn";
  }

  // Each day's highest 30-minute demand sold (slot Wh × 2) over the month, the month's
  // highest, and the highest instant reading with the span its readings cover.
  async function peaks() {
    const demand = await Kenshin.api(`${client.demand_api}?${query({
      from: client.peak_first, to: client.peak_last, direction: "reverse",
    })}`);
    const days = demand.days;
    const trace = {
      uid: "peak", name: m("plant.trace_peak"), type: "bar", marker: { color: "#2e8b57" },
      x: days.map((d) => d.day),
      y: days.map((d) => (d.demand_w === null ? null : d.demand_w / 1000)),
      customdata: days.map((d) => (d.start ? Kenshin.slot(d.start, lang).split(" ").pop() : "")),
      hovertemplate: `${m("plant.trace_peak")}: %{y:,.3f} kW (%{customdata})<extra></extra>`,
    };
    const layout = {
      ...base, height: 300, margin: { t: 10, r: 20, b: 40, l: 60 }, showlegend: false,
      xaxis: { type: "date", ...TICKS.day },
      yaxis: { title: { text: m("plant.axis_kw") }, rangemode: "tozero", separatethousands: true },
    };
    Plotly.newPlot(document.getElementById("peak-chart"), [trace], layout, config);
    const top = demand.peak;
    const summary = document.getElementById("peak-summary");
    summary.textContent = top
      ? m("plant.peak_of_month", { kw: Kenshin.kw(top.demand_w, lang), slot: Kenshin.slot(top.start, lang) })
      : m("plant.no_peak");
    summary.dataset.w = top ? top.demand_w : "";
    const instant = demand.instant;
    document.getElementById("instant-summary").textContent = instant
      ? m("plant.instant_of_month", {
        watts: Kenshin.watts(instant.power_w, lang), time: Kenshin.datetime(instant.at, lang),
        first: Kenshin.datetime(instant.covers_from, lang),
        last: Kenshin.datetime(instant.covers_to, lang), days: Kenshin.number(instant.days, lang),
      })
      : m("plant.no_instant");
    document.body.dataset.peaks = "drawn";
  }

  energy().catch(fail);
  peaks().catch(fail);

  // A new sale price (operators and administrators: only they get the form).
  const form = document.getElementById("price-form");
  const notice = document.getElementById("price-message");
  const say = (text, failed) => {
    notice.textContent = text;
    notice.classList.toggle("error", failed);
    notice.hidden = false;
  };
  if (form && location.hash === "#price-added") {
    say(m("plant.price_added"), false);
    history.replaceState(null, "", location.pathname + location.search);
  }
  form?.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const body = {
      yen_per_kwh: Number(data.get("yen_per_kwh")),
      valid_from: data.get("valid_from"),
      valid_to: data.get("valid_to") || null,
    };
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      await Kenshin.api(client.prices_api, { method: "POST", body: JSON.stringify(body) });
      // The estimate changes with the price: the page is read again, and says so.
      location.hash = "price-added";
      location.reload();
    } catch (error) {
      say(m("plant.price_refused", { detail: error.message }), true);
      button.disabled = false;
    }
  });
})();
