// The graph grid: today's 30-minute bars of each meter on the page, one small plotly chart
// a card (the data came with the page; the card itself links to the meter's detail).
"use strict";

(() => {
  const grid = Kenshin.readJSON("grid-data");
  const color = grid.direction === "reverse" ? "#e89a2c" : "#1f5fa8";
  const started = performance.now();
  const layout = {
    height: 120,
    margin: { t: 4, b: 20, l: 34, r: 4 },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    bargap: 0.15,
    font: { size: 10 },
    xaxis: { tickvals: ["00:00", "06:00", "12:00", "18:00"], fixedrange: true },
    yaxis: { rangemode: "tozero", fixedrange: true, ticksuffix: " Wh", nticks: 3 },
    showlegend: false,
  };
  let drawn = 0;
  for (const meter of grid.meters) {
    const element = document.getElementById(`bars-${meter.id}`);
    const trace = {
      type: "bar",
      x: grid.slots,
      y: meter.wh,
      marker: { color },
      hoverinfo: "skip",
    };
    // Static: no hover layer or mode bar, so 24 charts draw fast and a click is the card's.
    Plotly.newPlot(element, [trace], layout, { staticPlot: true, responsive: true });
    drawn += 1;
  }
  document.body.dataset.drawn = drawn;
  document.body.dataset.drawMs = Math.round(performance.now() - started);
})();
