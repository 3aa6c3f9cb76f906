// The cross-plant comparison: each plant's sold energy per day of the month, one line
// each; a point opens that plant's hours of that day.
"use strict";

(() => {
  const client = Kenshin.readJSON("client");
  const m = (key, values) => Kenshin.message(client.messages, key, values);
  const element = document.getElementById("compare-chart");
  const lang = client.lang;
  const all = client.plants.flatMap((plant) => plant.wh.map((wh) => wh / 1000));
  const axis = Kenshin.valueAxis(all, "kWh", lang);
  // Today is not over: its energy so far is a hollow point of its own, apart from the
  // line, so the line does not fall at its end.
  const running = client.days.map((day) => day === client.today);
  const colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];
  const traces = client.plants.flatMap((plant, n) => {
    const y = plant.wh.map((wh) => wh / 1000);
    const color = colors[n % colors.length];
    const links = client.days.map((day) => `/plants/${plant.meter_id}?view=hour&day=${day}`);
    const line = {
      uid: `plant-${plant.meter_id}`, name: plant.name, legendgroup: `plant-${plant.meter_id}`,
      type: "scatter", mode: "lines+markers", line: { color }, marker: { color },
      x: client.days, y: y.map((v, i) => (running[i] ? null : v)),
      customdata: links, text: y.map((v) => axis.text(v)),
      hovertemplate: `${plant.name}: %{text}<extra></extra>`,
    };
    if (!running.some(Boolean)) return [line];
    const i = running.indexOf(true);
    return [line, {
      uid: `today-${plant.meter_id}`, name: plant.name, legendgroup: `plant-${plant.meter_id}`,
      showlegend: false, type: "scatter", mode: "markers",
      marker: { color, symbol: "circle-open", size: 9, line: { width: 2 } },
      x: [client.days[i]], y: [y[i]], customdata: [links[i]],
      hovertemplate: `${plant.name}: ${m("plants.so_far")} ${axis.text(y[i])}<extra></extra>`,
    }];
  });
  const layout = {
    height: 380, margin: { t: 10, r: 20, b: 40, l: 60 },
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    hovermode: "x unified", legend: { orientation: "h", y: -0.15 },
    xaxis: {
      ...Kenshin.timeAxis("day", client.days[0], client.days.length, element.clientWidth - 80, lang),
      fixedrange: true,
    },
    yaxis: { ...axis.layout, title: { text: Kenshin.narrow() ? "" : m("plants.axis_day_kwh") } },
  };
  Plotly.newPlot(element, traces, layout, { displayModeBar: false, responsive: true })
    .then(() => Kenshin.fitTimeAxis(element, "day", client.days[0], client.days.length, lang))
    .then(() => { document.body.dataset.drawn = "1"; });
  element.on("plotly_click", (event) => {
    location.href = event.points[0].customdata;
  });
})();
