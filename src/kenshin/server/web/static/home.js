// Home: the donut of gateways by state; a segment opens the list filtered by its state.
"use strict";

(() => {
  const donut = Kenshin.readJSON("donut-data");
  const colors = {
    working: "#2e8b57", never_seen: "#9aa3ad", lost_contact: "#d0453c", meter_link_down: "#e89a2c",
  };
  const element = document.getElementById("donut");
  const trace = {
    type: "pie",
    hole: 0.58,
    sort: false,
    direction: "clockwise",
    values: donut.counts,
    labels: donut.labels,
    customdata: donut.links,
    marker: { colors: donut.states.map((state) => colors[state]) },
    textinfo: "value",
    hovertemplate: "%{label}: %{value}<extra></extra>",
  };
  const layout = {
    showlegend: false, height: 260, margin: { t: 8, b: 8, l: 8, r: 8 },
    paper_bgcolor: "rgba(0,0,0,0)", font: { size: 14 },
  };
  Plotly.newPlot(element, [trace], layout, { displayModeBar: false, responsive: true });
  element.on("plotly_click", (event) => {
    location.href = event.points[0].customdata;
  });
})();
