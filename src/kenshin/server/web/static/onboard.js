// Onboarding: the homes CSV previewed (POST /homes/import?dry_run=true) and imported,
// and on a site's set-up page each meter's first reading, awaited by polling
// GET /meters/{id}/current until it has one.
"use strict";

(() => {
  const importing = Kenshin.readJSON("onboard-data");
  if (importing) {
    const { api, lang, messages } = importing;
    const text = document.getElementById("csv-text");
    const rows = document.getElementById("import-rows");
    const summary = document.getElementById("import-summary");
    const error = document.getElementById("import-error");
    const importNow = document.getElementById("import-now");

    document.getElementById("csv-file").addEventListener("change", async (event) => {
      const file = event.target.files[0];
      if (file) text.value = (await file.text()).replace(/^\uFEFF/, "");
      importNow.disabled = true;
    });
    text.addEventListener("input", () => { importNow.disabled = true; });

    async function post(dryRun) {
      const response = await fetch(`${api}?dry_run=${dryRun}`, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "text/csv", Accept: "application/json", "X-CSRF-Token": Kenshin.csrfToken() },
        body: text.value,
      });
      const body = await response.json().catch(() => null);
      if (response.ok) return body;
      if (body && body.report) return body.report;
      throw new Kenshin.ApiError(response.status, body && (body.detail || body.title));
    }

    function show(report) {
      const tbody = rows.querySelector("tbody");
      tbody.replaceChildren();
      for (const row of report.rows) {
        const tr = document.createElement("tr");
        tr.dataset.line = row.line;
        tr.className = row.error ? "bad" : "good";
        tr.append(Kenshin.cell(Kenshin.number(row.line, lang), "num"), Kenshin.cell(row.customer_id), Kenshin.cell(row.service_code));
        const result = document.createElement("td");
        if (row.error) {
          result.textContent = row.error;
        } else if (row.site_id) {
          const link = document.createElement("a");
          link.href = `/sites/${row.site_id}/setup`;
          link.textContent = Kenshin.message(messages, "onboard.imported_row");
          result.append(link);
        } else {
          result.textContent = Kenshin.message(messages, "onboard.row_ok");
        }
        tr.append(result);
        tbody.append(tr);
      }
      rows.hidden = false;
      const key = report.dry_run ? "onboard.previewed" : (report.errors ? "onboard.refused" : "onboard.imported");
      summary.textContent = Kenshin.message(messages, key, {
        added: Kenshin.number(report.added, lang), errors: Kenshin.number(report.errors, lang),
      });
      summary.className = report.errors ? "notice error" : "notice";
      summary.hidden = false;
      importNow.disabled = !(report.dry_run && report.errors === 0 && report.added > 0);
    }

    async function run(dryRun) {
      error.hidden = true;
      try {
        show(await post(dryRun));
      } catch (err) {
        error.textContent = Kenshin.message(messages, "form.failed", { reason: err.message });
        error.hidden = false;
      }
    }
    document.getElementById("preview").addEventListener("click", () => run(true));
    importNow.addEventListener("click", () => { importNow.disabled = true; run(false); });
  }

  const setup = Kenshin.readJSON("setup-data");
  if (setup) {
    const { poll_ms: pollMs, lang, messages } = setup;
    for (const meter of setup.meters) {
      const element = document.querySelector(`[data-first-reading="${meter.id}"]`);
      const look = async () => {
        let now = null;
        try {
          now = await Kenshin.api(meter.url);
        } catch (err) {
          // a passing failure: ask again next time
        }
        if (now && now.at) {
          element.textContent = Kenshin.message(messages, "setup.reading_arrived", {
            power: now.power_w === null ? "—" : Kenshin.power(now.power_w, lang, messages["list.selling"]),
            at: Kenshin.datetime(now.at, lang),
          });
          element.classList.add("arrived");
          return;
        }
        setTimeout(look, pollMs);
      };
      look();
    }
  }
})();
