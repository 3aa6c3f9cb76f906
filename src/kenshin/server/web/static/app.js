// Shared by every page: the page's data, formats that match the server's, the JSON API.
"use strict";

const Kenshin = (() => {
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const LOCALES = { ja: "ja-JP", en: "en-US" };

  // Data the server put in the page as <script type="application/json" id="...">.
  function readJSON(id) {
    const element = document.getElementById(id);
    return element ? JSON.parse(element.textContent) : null;
  }

  function message(messages, key, values = {}) {
    let text = messages[key] ?? key;
    for (const [name, value] of Object.entries(values)) text = text.replaceAll(`{${name}}`, value);
    return text;
  }

  function number(value, lang, digits = 0) {
    return new Intl.NumberFormat(LOCALES[lang], {
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
    }).format(value);
  }

  const kwh = (wh, lang) => `${number(wh / 1000, lang, 1)} kWh`;
  const watts = (w, lang) => `${number(w, lang)} W`;
  // A 30-minute demand (Wh × 2, whole W) in kW: three decimals keep it exact.
  const kw = (w, lang) => `${number(w / 1000, lang, 3)} kW`;

  // JST wall-clock parts of an instant, whatever the browser's own zone.
  function jstParts(instant) {
    const parts = new Intl.DateTimeFormat("en-US", {
      timeZone: "Asia/Tokyo", year: "numeric", month: "numeric", day: "numeric",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
    }).formatToParts(new Date(instant));
    return Object.fromEntries(parts.map((p) => [p.type, p.value]));
  }

  // "2026年11月24日 15:30" or "24 Nov 2026 15:30", as the server writes them.
  function datetime(instant, lang) {
    const p = jstParts(instant);
    const date = lang === "ja"
      ? `${p.year}年${Number(p.month)}月${Number(p.day)}日`
      : `${Number(p.day)} ${MONTHS[p.month - 1]} ${p.year}`;
    return `${date} ${p.hour}:${p.minute}`;
  }

  // A 30-minute slot by its start: "2026年11月24日 15:30–16:00".
  function slot(start, lang) {
    const end = jstParts(Date.parse(start) + 30 * 60 * 1000);
    return `${datetime(start, lang)}–${end.hour}:${end.minute}`;
  }

  function clock(instant) {
    const p = jstParts(instant);
    return `${p.hour}:${p.minute}:${p.second}`;
  }

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail || `HTTP ${status}`);
      this.status = status;
    }
  }

  // The session's CSRF token, which every POST, PUT, PATCH and DELETE sends back.
  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  // The JSON API with this page's session; a problem response becomes an ApiError.
  async function api(url, options = {}) {
    const { headers = {}, ...rest } = options;
    const response = await fetch(url, {
      credentials: "same-origin",
      ...rest,
      headers: {
        Accept: "application/json",
        "Content-Type": "application/json",
        "X-CSRF-Token": csrfToken(),
        ...headers,
      },
    });
    if (response.status === 401) {  // the session ended: log in again, then come back
      location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
      throw new ApiError(401, "log in again");
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, body && (body.detail || body.title));
    return body;
  }

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  return { readJSON, message, number, kwh, watts, kw, datetime, slot, clock, csrfToken, api, ApiError, cell };
})();
