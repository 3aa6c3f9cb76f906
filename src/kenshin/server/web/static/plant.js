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
  const COUNTS = { hour: 24, day: 0, month: 12 };  // a day view: the month's days
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
      const url = `${client.weather_api}?${query({ day: client.first })}`;
      const { items: hours } = await Kenshin.api(url); // one page: the day's hours
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

  // An instant as plotly's date axis takes it: the JST wall clock (JST has no DST).
  const jstWall = (ms) => new Date(ms + 9 * 3600e3).toISOString().slice(0, 19).replace("T", " ");
  // An hour of weather that has not been yet is a forecast.
  const forecastHour = (h) => Date.parse(h.at) + 3600e3 > Date.now();

  async function energy() {
    const view = client.view;
    const [series, hours] = await Promise.all([
      Kenshin.api(`${client.energy_api}?${query({
        period: view, from: client.first, to: client.last, direction: "reverse",
      })}`),
      weather(),
    ]);
    const element = document.getElementById("energy-chart");
    const narrow = Kenshin.narrow();
    const y = series.values.map((v) => (v.wh === null ? null : v.wh / 1000));
    const axis = Kenshin.valueAxis(y, "kWh", lang);
    // This hour / today / this month so far: hatched, not a fall in production.
    const unfinished = series.values.map((v) => Kenshin.running(view, v));
    element.dataset.unfinished = unfinished.filter(Boolean).length;
    const traces = [{
      uid: "sold", name: m("plant.trace_sold"), type: "bar", marker: Kenshin.barMarker("#e0a526", unfinished),
      x: series.values.map((v) => v.start),
      y,
      customdata: y.map((v, i) => (unfinished[i] ? m("plant.so_far", { value: axis.text(v) }) : axis.text(v))),
      hovertemplate: `${m("plant.trace_sold")}: %{customdata}<extra></extra>`,
      ...(PERIOD_MS[view] ? { xperiod: PERIOD_MS[view], xperiodalignment: "middle" } : {}),
    }];
    const count = COUNTS[view] || series.values.length;
    const layout = {
      ...base, height: 380, margin: { t: 10, r: 20, b: 40, l: 60 },
      xaxis: {
        ...Kenshin.timeAxis(view, client.first, count, element.clientWidth - 100, lang), fixedrange: true,
      },
      yaxis: { ...axis.layout, title: { text: narrow ? "" : m("plant.axis_energy") } },
    };
    if (view === "hour") {  // the day, whatever the labels and notes beside it
      const midnight = Date.parse(`${client.first}T00:00:00+09:00`);
      layout.xaxis.range = [jstWall(midnight), jstWall(midnight + 86400e3)];
    }
    if (hours.length) {
      const x = hours.map((h) => h.at);
      const forecast = hours.map(forecastHour);
      // What has not happened yet is a forecast, and the chart says so: in the hover, in
      // the legend, and as a shaded, labelled span from the first forecast hour.
      const tag = (name) => (forecast.some(Boolean) ? m("plant.with_forecast", { name }) : name);
      const hoverName = (name) => forecast.map((f) => (f ? m("plant.forecast_of", { name }) : name));
      traces.push({
        uid: "irradiance", name: tag(m("plant.trace_irradiance")), type: "scatter", mode: "lines",
        x, y: hours.map((h) => h.irradiance_w_m2), yaxis: "y2", line: { color: "#d0453c", shape: "spline" },
        customdata: hoverName(m("plant.trace_irradiance")),
        hovertemplate: "%{customdata}: %{y:,.0f} W/m²<extra></extra>",
        xperiod: 3600e3, xperiodalignment: "middle",
      }, {
        uid: "temperature", name: tag(m("plant.trace_temperature")), type: "scatter", mode: "lines+markers",
        x, y: hours.map((h) => h.temperature_c), yaxis: "y3",
        line: { color: "#4682c8", dash: "dot" }, marker: { size: 4 },
        customdata: hoverName(m("plant.trace_temperature")),
        hovertemplate: `%{customdata}: %{y:.1f} ${m("plant.axis_temperature")}<extra></extra>`,
        xperiod: 3600e3, xperiodalignment: "middle",
      });
      layout.margin.r = 10;
      layout.xaxis.domain = [0, narrow ? 0.78 : 0.86];
      layout.yaxis2 = {
        title: { text: narrow ? "" : m("plant.axis_irradiance") }, overlaying: "y", side: "right",
        rangemode: "tozero", showgrid: false, anchor: "x", tickformat: ",.0f", fixedrange: true,
        nticks: 5, ...(narrow ? { ticksuffix: " W/m²", tickfont: { size: 10 } } : {}),
      };
      // On a phone the temperature keeps its line, legend and hover, not a third axis of
      // labels squeezed beside the second.
      layout.yaxis3 = {
        title: { text: narrow ? "" : m("plant.axis_temperature") }, overlaying: "y", side: "right",
        anchor: "free", position: 0.96, showgrid: false, tickformat: ".0f", fixedrange: true,
        nticks: 5, showticklabels: !narrow,
      };
      const first = hours.find(forecastHour);
      if (first) {
        const end = jstWall(Date.parse(hours[hours.length - 1].at) + 3600e3);
        layout.shapes = [{
          type: "rect", xref: "x", yref: "paper", x0: first.at, x1: end, y0: 0, y1: 1,
          fillcolor: "rgba(120, 130, 140, 0.12)", line: { width: 0 }, layer: "below",
        }];
        layout.annotations = [{
          xref: "x", yref: "paper", x: end, y: 1, xanchor: "right", yanchor: "top", showarrow: false,
          text: m("plant.forecast"), font: { size: 11, color: "#55606b" },
        }];
      }
    }
    await Plotly.newPlot(element, traces, layout, config);
    await Kenshin.fitTimeAxis(element, view, client.first, count, lang);
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
    const element = document.getElementById("peak-chart");
    const y = days.map((d) => (d.demand_w === null ? null : d.demand_w / 1000));
    const axis = Kenshin.valueAxis(y, "kW", lang);
    const today = client.today;
    const unfinished = days.map((d) => d.day === today && d.demand_w !== null);  // today's so far
    const trace = {
      uid: "peak", name: m("plant.trace_peak"), type: "bar", marker: Kenshin.barMarker("#2e8b57", unfinished),
      x: days.map((d) => d.day),
      y,
      customdata: days.map((d, i) => {
        const value = `${axis.text(y[i])} (${d.start ? Kenshin.slot(d.start, lang).split(" ").pop() : ""})`;
        return unfinished[i] ? m("plant.so_far", { value }) : value;
      }),
      hovertemplate: `${m("plant.trace_peak")}: %{customdata}<extra></extra>`,
    };
    const layout = {
      ...base, height: 300, margin: { t: 10, r: 20, b: 40, l: 60 }, showlegend: false,
      xaxis: {
        ...Kenshin.timeAxis("day", client.peak_first, days.length, element.clientWidth - 80, lang),
        fixedrange: true,
      },
      yaxis: { ...axis.layout, title: { text: Kenshin.narrow() ? "" : m("plant.axis_demand") } },
    };
    await Plotly.newPlot(element, [trace], layout, config);
    await Kenshin.fitTimeAxis(element, "day", client.peak_first, days.length, lang);
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
