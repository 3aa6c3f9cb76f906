// The graph grid: today's 30-minute bars of each meter on the page, one small plotly chart
// a card (the data came with the page; the card itself links to the meter's detail).
// The cards in view are drawn at once, the others just after, a few at a time, so the
// page shows its first screenful without waiting for all of them.
"use strict";

(() => {
  const grid = Kenshin.readJSON("grid-data");
  const color = grid.direction === "reverse" ? "#e89a2c" : "#1f5fa8";
  const started = performance.now();
  const hours = grid.slots.map((_, n) => n / 2); // slot n starts at n / 2 h
  // The y axis of each card: its own scale, or (?scale=shared) one for every card of the
  // page, so sites can be compared at a glance. Either way one tick at a round top, in
  // the unit its magnitude needs, written inside the plot (the card is narrow).
  const top = grid.scale === "shared"
    ? Math.max(0, ...grid.meters.flatMap((meter) => meter.wh.filter((wh) => wh !== null)))
    : undefined;
  // Only the top of the scale is written (the bottom is the zero line), room left above
  // its line for its label.
  const topTick = (axis) => ({
    ...axis, tickvals: axis.tickvals.slice(-1), ticktext: axis.ticktext.slice(-1),
    range: [0, axis.range[1] * 1.25],
  });
  const layout = (meter) => ({
    height: 120,
    margin: { t: 4, b: 20, l: 16, r: 16 },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    bargap: 0.15,
    font: { size: 10 },
    xaxis: {
      range: [-0.25, 23.75], tickvals: [0, 6, 12, 18], ticktext: ["0:00", "6:00", "12:00", "18:00"],
      showgrid: false, fixedrange: true,
    },
    yaxis: {
      ...topTick(Kenshin.valueAxis(meter.wh, "Wh", grid.lang, { ticks: 1, top }).layout),
      automargin: false, ticklabelposition: "inside top", showgrid: true, gridcolor: "#e3e7eb",
      zeroline: true, tickfont: { size: 9, color: "#6b7785" },
    },
    showlegend: false,
  });
  let drawn = 0;

  function draw(meter) {
    const element = document.getElementById(`bars-${meter.id}`);
    const trace = { type: "bar", x: hours, y: meter.wh, marker: { color }, hoverinfo: "skip" };
    // Static: no hover layer or mode bar (cheaper to draw), and a click is the card's.
    Plotly.newPlot(element, [trace], layout(meter), { staticPlot: true, responsive: true });
    drawn += 1;
  }

  const inView = (meter) =>
    document.getElementById(`bars-${meter.id}`).getBoundingClientRect().top < window.innerHeight;
  const later = grid.meters.filter((meter) => !inView(meter));
  grid.meters.filter(inView).forEach(draw);
  // For the timings of the browser test: since the navigation began, and drawing alone.
  document.body.dataset.firstScreenAt = Math.round(performance.now());
  document.body.dataset.firstScreen = drawn;

  function drawSome() {
    later.splice(0, 4).forEach(draw);
    if (later.length) {
      setTimeout(drawSome, 0);
    } else {
      document.body.dataset.drawnAt = Math.round(performance.now());
      document.body.dataset.drawMs = Math.round(performance.now() - started);
      document.body.dataset.drawn = drawn;
    }
  }
  drawSome();
})();
