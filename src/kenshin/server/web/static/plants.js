// The cross-plant comparison: each plant's sold energy per day of the month, one line
// each; a point opens that plant's hours of that day.
"use strict";

(() => {
  const client = Kenshin.readJSON("client");
  const m = (key, values) => Kenshin.message(client.messages, key, values);
  const element = document.getElementById("compare-chart");
  const traces = client.plants.map((plant) => ({
    uid: `plant-${plant.meter_id}`,
    name: plant.name,
    type: "scatter",
    mode: "lines+markers",
    x: client.days,
    y: plant.wh.map((wh) => wh / 1000),
    customdata: client.days.map((day) => `/plants/${plant.meter_id}?view=hour&day=${day}`),
    hovertemplate: `${plant.name}: %{y:,.1f} kWh<extra></extra>`,
  }));
  const layout = {
    height: 380, margin: { t: 10, r: 20, b: 40, l: 60 },
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    hovermode: "x unified", legend: { orientation: "h", y: -0.15 },
    xaxis: { type: "date", tickformat: client.lang === "ja" ? "%-m/%-d" : "%b %-d", hoverformat: "%Y-%m-%d" },
    yaxis: { title: { text: m("plants.axis_day_kwh") }, rangemode: "tozero", separatethousands: true },
  };
  Plotly.newPlot(element, traces, layout, { displayModeBar: false, responsive: true });
  element.on("plotly_click", (event) => {
    location.href = event.points[0].customdata;
  });
  document.body.dataset.drawn = "1";
})();
