// The list of sites: read from the JSON API and read again every few seconds (20 by
// default) in place, so the page never reloads and the reader keeps their scroll.
"use strict";

(() => {
  const client = Kenshin.readJSON("client");
  const lang = client.lang;
  const m = (key, values) => Kenshin.message(client.messages, key, values);
  const rows = document.getElementById("rows");
  const prev = document.getElementById("prev");
  const next = document.getElementById("next");
  const cursors = [null];  // cursors[i]: the cursor that reads page i
  let pageIndex = 0;
  let nextCursor = null;
  let timer = null;

  // On a phone each row becomes a card: every cell carries its column's name.
  const labels = [...document.querySelectorAll("table.sites thead th")].map((th) => th.textContent);

  function row(site) {
    const tr = document.createElement("tr");
    tr.dataset.siteId = site.id;
    const code = document.createElement("td");
    const site_link = document.createElement("a");
    site_link.href = `/sites/${site.id}`;
    site_link.textContent = site.service_code;
    code.append(site_link);
    tr.append(
      code,
      Kenshin.cell(site.customer_id),
      Kenshin.cell(site.address ?? ""),
      Kenshin.cell(site.phone ?? "", "nowrap"),
    );
    const state = document.createElement("td");
    if (site.gateway_id) {
      const link = document.createElement("a");
      link.href = `/gateways/${site.gateway_id}`;
      link.textContent = m(`state.${site.gateway_state}`);
      link.className = `badge state-${site.gateway_state}`;
      state.append(link);
    }
    tr.append(state);
    tr.append(site.measured
      ? Kenshin.cell(site.power_w < 0  // selling: said so, never as negative watts (as on Plants)
        ? m("list.selling", { watts: Kenshin.watts(-site.power_w, lang) })
        : Kenshin.watts(site.power_w, lang), "num power")
      : Kenshin.cell(m("list.not_measured"), "num power not-measured"));
    tr.append(Kenshin.cell(
      site.today_bought_wh == null ? m("common.none") : Kenshin.kwh(site.today_bought_wh, lang), "num today"));
    tr.querySelectorAll("td").forEach((td, i) => { td.dataset.label = labels[i]; });
    return tr;
  }

  async function load() {
    clearTimeout(timer);
    const params = new URLSearchParams();
    for (const state of client.states) params.append("state", state);
    if (client.q) params.set("q", client.q);
    if (cursors[pageIndex]) params.set("cursor", cursors[pageIndex]);
    try {
      const page = await Kenshin.api(`${client.api}?${params}`);
      rows.replaceChildren(...page.items.map(row));
      nextCursor = page.next_cursor;
      document.getElementById("empty").hidden = page.items.length > 0;
      document.getElementById("load-failed").hidden = true;
      document.getElementById("updated").textContent =
        m("list.updated_at", { time: Kenshin.clock(Date.now()) });
      document.body.dataset.loads = Number(document.body.dataset.loads || 0) + 1;
    } catch (error) {
      document.getElementById("load-failed").hidden = false;
    }
    prev.disabled = pageIndex === 0;
    next.disabled = !nextCursor;
    timer = setTimeout(load, client.refresh_ms);
  }

  next.addEventListener("click", () => {
    if (!nextCursor) return;
    cursors[pageIndex + 1] = nextCursor;
    pageIndex += 1;
    load().then(() => window.scrollTo(0, 0));
  });
  prev.addEventListener("click", () => {
    if (pageIndex === 0) return;
    pageIndex -= 1;
    load().then(() => window.scrollTo(0, 0));
  });
  load();
})();
