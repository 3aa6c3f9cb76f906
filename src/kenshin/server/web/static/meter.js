// A meter's detail: its energy for the view (hours of a day, days of a month, months of a
// year) and the range's peak, read from the JSON API; and while the page is open, a
// realtime trace: a lease on the gateway's fast reads, renewed while the page is visible,
// ended when it is hidden or left, and the new samples added to the trace as they come.
"use strict";

(() => {
  const client = Kenshin.readJSON("meter-data");
  const lang = client.lang;
  const m = (key, values) => Kenshin.message(client.messages, key, values);
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const color = client.direction === "reverse" ? "#e89a2c" : "#1f5fa8";
  const none = m("common.none");

  // The API's times are JST already ("2026-11-24T15:00:00+09:00"): read the wall clock.
  const wall = (at) => ({
    year: Number(at.slice(0, 4)), month: Number(at.slice(5, 7)), day: Number(at.slice(8, 10)),
    time: at.slice(11, 16),
  });

  // The chart's axis: short; the table's first column: the full period.
  function axisLabel(at) {
    const w = wall(at);
    if (client.view === "hour") return w.time;
    if (client.view === "day") return lang === "ja" ? `${w.day}日` : String(w.day);
    return lang === "ja" ? `${w.month}月` : MONTHS[w.month - 1];
  }

  function periodLabel(at) {
    const w = wall(at);
    if (client.view === "hour") return w.time;
    if (client.view === "day") {
      return lang === "ja" ? `${w.year}年${w.month}月${w.day}日` : `${w.day} ${MONTHS[w.month - 1]} ${w.year}`;
    }
    return lang === "ja" ? `${w.year}年${w.month}月` : `${MONTHS[w.month - 1]} ${w.year}`;
  }

  function statusText(value) {
    if (value.wh == null) return m("meter.status_missing");
    if (value.complete) return m("meter.status_complete");
    return m("meter.status_partial", {
      slots: Kenshin.number(value.slots, lang), expected: Kenshin.number(value.expected_slots, lang),
    });
  }

  function drawEnergy(series) {
    const x = series.values.map((v) => axisLabel(v.start));
    // The period still running (this hour, today, this month) is not a fall in use: its
    // bar is drawn hatched and pale, and says so, until the period is over.
    const unfinished = series.values.map((v) => Kenshin.running(client.view, v));
    const axis = Kenshin.valueAxis(series.values.map((v) => v.wh), "Wh", lang);
    const trace = {
      type: "bar",
      x,
      y: series.values.map((v) => v.wh),
      marker: Kenshin.barMarker(color, unfinished),
      customdata: series.values.map((v, i) => (v.wh == null ? none
        : unfinished[i] ? m("meter.so_far", { value: Kenshin.kwh(v.wh, lang) }) : Kenshin.kwh(v.wh, lang))),
      hovertemplate: "%{x}: %{customdata}<extra></extra>",
    };
    document.getElementById("chart").dataset.unfinished = unfinished.filter(Boolean).length;
    const layout = {
      height: 320,
      margin: { t: 10, b: 40, l: 60, r: 10 },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      // As many labels as fit the width, each a round number of periods apart: never
      // two on top of each other on a phone.
      xaxis: {
        type: "category", automargin: true, fixedrange: true, tickangle: 0, tickmode: "linear", tick0: 0,
        ticklabelstandoff: 6,
        dtick: Kenshin.every(x.length, document.getElementById("chart").clientWidth - 70,
          { hour: 44, day: 30, month: 40 }[client.view]),
      },
      yaxis: { rangemode: "tozero", ...axis.layout },
      bargap: 0.15,
    };
    Plotly.newPlot("chart", [trace], layout, { displayModeBar: false, responsive: true });
    document.getElementById("total").textContent = Kenshin.kwh(series.total_wh, lang);
    document.getElementById("values").replaceChildren(...series.values.map((v) => {
      const tr = document.createElement("tr");
      tr.dataset.start = v.start;
      tr.append(
        Kenshin.cell(periodLabel(v.start)),
        Kenshin.cell(v.wh == null ? none : Kenshin.kwh(v.wh, lang), "num"),
        Kenshin.cell(statusText(v)),
      );
      return tr;
    }));
  }

  // The range's peaks (the demand endpoint): the highest 30-minute demand first, then the
  // highest instant reading with the span its readings cover, which may be shorter.
  function showPeak(demand) {
    const peak = demand.peak;
    const kw = document.getElementById("peak-kw");
    kw.textContent = peak ? Kenshin.kw(peak.demand_w, lang) : m("meter.demand_none");
    kw.dataset.w = peak ? peak.demand_w : "";
    document.getElementById("peak-at").textContent = peak ? Kenshin.slot(peak.start, lang) : none;
    const instant = demand.instant;
    document.getElementById("instant-w").textContent = instant ? Kenshin.watts(instant.power_w, lang) : none;
    document.getElementById("instant-at").textContent = instant ? Kenshin.datetime(instant.at, lang) : none;
    document.getElementById("instant-covers").textContent = instant
      ? m("meter.instant_covers", {
        first: Kenshin.datetime(instant.covers_from, lang),
        last: Kenshin.datetime(instant.covers_to, lang),
        days: Kenshin.number(instant.days, lang),
      })
      : m("meter.instant_none");
  }

  async function loadEnergy() {
    try {
      const [series, demand] = await Promise.all([
        Kenshin.api(client.energy_url), Kenshin.api(client.demand_url),
      ]);
      drawEnergy(series);
      showPeak(demand);
      document.body.dataset.energyLoaded = "1";
    } catch (error) {
      document.getElementById("load-failed").hidden = false;
    }
  }

  // -- realtime ------------------------------------------------------------------------

  function startLive(live) {
    const chart = document.getElementById("live-chart");
    const state = document.getElementById("live-state");
    const status = document.getElementById("live-status");
    const latest = document.getElementById("live-latest");
    const KEEP = 1200;  // points kept on the trace: an hour at 3 s
    const SHOWN_MS = 5 * 60 * 1000;  // the x axis: the last five minutes
    // An instant as plotly's date axis takes it: the JST wall clock (JST has no DST).
    const jstWall = (ms) => new Date(ms + 9 * 3600 * 1000).toISOString().slice(0, 19).replace("T", " ");
    const windowRange = () => [jstWall(Date.now() - SHOWN_MS), jstWall(Date.now() + 10 * 1000)];
    // W or kW by magnitude; power sold (negative) written as sold, never as "-850 W".
    const powerAxis = (values) => Kenshin.valueAxis(values, "W", lang, { selling: m("list.selling") }).layout;
    // The hover says it as the rest of the panel: "買電 850 W" / "売電 850 W", never "-850 W".
    const hoverPower = (w) => m(w < 0 ? "meter.live_sold" : "meter.live_bought", {
      watts: Kenshin.watts(Math.round(Math.abs(w)), lang),
    });
    let active = false;
    let lastMs = null;
    let points = 0;
    let pollTimer = null;
    let renewTimer = null;

    Plotly.newPlot(chart, [{
      type: "scatter", mode: "lines+markers", x: [], y: [],
      line: { color, width: 2 }, marker: { size: 4, color },
      customdata: [],
      hovertemplate: "%{x|%H:%M:%S} %{customdata}<extra></extra>",
    }], {
      height: 260,
      margin: { t: 10, b: 40, l: 60, r: 10 },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      xaxis: { type: "date", tickformat: "%H:%M:%S", range: windowRange(), ticklabelstandoff: 6, nticks: 6 },
      yaxis: powerAxis([]),
    }, { displayModeBar: false, responsive: true });

    function show(on, text) {
      state.classList.toggle("on", on);
      status.textContent = text;
    }

    async function renew() {
      try {
        const lease = await Kenshin.api(live.start_url, { method: "POST" });
        show(true, m("meter.live_on", { seconds: lease.interval_s }));
      } catch (error) {
        show(false, m("meter.live_failed"));
      }
    }

    async function poll() {
      const now = Date.now();
      const start = lastMs === null ? now - live.window_s * 1000 : lastMs + 1;
      const params = new URLSearchParams({
        start: new Date(start).toISOString(),
        end: new Date(now + 3600 * 1000).toISOString(),  // a gateway's clock a little ahead
        max_points: "5000",
      });
      try {
        const series = await Kenshin.api(`${live.power_url}?${params}`);
        const fresh = series.values.filter((v) => lastMs === null || Date.parse(v.at) > lastMs);
        if (fresh.length) {
          Plotly.extendTraces(chart, {
            x: [fresh.map((v) => jstWall(Date.parse(v.at)))],
            y: [fresh.map((v) => v.mean_w)],
            customdata: [fresh.map((v) => hoverPower(v.mean_w))],
          }, [0], KEEP);
          Plotly.relayout(chart, { yaxis: powerAxis(chart.data[0].y) });
          const newest = fresh[fresh.length - 1];
          lastMs = Date.parse(newest.at);
          points += fresh.length;
          document.body.dataset.livePoints = points;
          latest.textContent = m("meter.live_latest", {
            power: Kenshin.power(Math.round(newest.mean_w), lang, m("list.selling")),
            time: Kenshin.clock(newest.at),
          });
        }
        Plotly.relayout(chart, { "xaxis.range": windowRange() });
      } catch (error) {
        // a missed poll: the next one asks from the same point again
      }
      if (active) pollTimer = setTimeout(poll, live.interval_ms);
    }

    function start() {
      if (active) return;
      active = true;
      renew();
      poll();
      renewTimer = setInterval(renew, live.renew_ms);
    }

    function stop() {
      if (!active) return;
      active = false;
      clearTimeout(pollTimer);
      clearInterval(renewTimer);
      // Sent even as the page goes away (keepalive), with the session's CSRF token (which
      // a beacon cannot carry).
      fetch(live.stop_url, {
        method: "POST",
        credentials: "same-origin",
        keepalive: true,
        headers: { "X-CSRF-Token": Kenshin.csrfToken() },
      });
      show(false, m("meter.live_stopped"));
    }

    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden") stop();
      else start();
    });
    window.addEventListener("pagehide", stop);
    window.addEventListener("pageshow", (event) => { if (event.persisted) start(); });
    if (document.visibilityState !== "hidden") start();
  }

  loadEnergy();
  if (client.live) startLive(client.live);
})();
