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

  // Power as the panel says it: bought as plain watts, sold as "売電 850 W" / "selling
  // 850 W" (`selling`: that message with {watts}), never as negative watts.
  const power = (w, lang, selling) =>
    (w < 0 ? message({}, selling, { watts: watts(-w, lang) }) : watts(w, lang));

  // -- charts: one unit an axis, chosen by magnitude, and labels that never repeat -------

  const UNITS = { Wh: ["Wh", "kWh", "MWh", "GWh"], W: ["W", "kW", "MW", "GW"] };
  const IN_BASE = { Wh: ["Wh", 1], kWh: ["Wh", 1e3], W: ["W", 1], kW: ["W", 1e3] };

  // A round step (1, 2, 2.5 or 5 × 10^n) giving about `count` steps over `span`.
  function niceStep(span, count) {
    const raw = span / count;
    const power10 = 10 ** Math.floor(Math.log10(raw));
    const f = raw / power10;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * power10;
  }

  // A value axis for `values` (in `of`: "Wh", "kWh", "W" or "kW"; nulls skipped): one unit
  // for the whole axis, the largest magnitude read below 1,000 of it (a month in kWh or
  // MWh, never "700,000 Wh"), ticks at round steps written once each with the unit, and
  // nothing measured (or all zero) one "0 Wh" tick, not "1 Wh 1 Wh 0 Wh". `layout` goes
  // into plotly's yaxis; `text(v)` writes a value in the axis's unit (for hovers);
  // `top` (in `of`) forces the axis up to it (a shared scale); `selling` (a message with
  // {watts}) writes a power axis's negative ticks as sold, never as negative watts.
  function valueAxis(values, of, lang, { ticks = 4, top, selling } = {}) {
    const [base, factor] = IN_BASE[of];
    const known = values.filter((v) => typeof v === "number" && Number.isFinite(v)).map((v) => v * factor);
    if (typeof top === "number") known.push(top * factor);
    const lo = Math.min(0, ...known);
    const hi = Math.max(0, ...known);
    const big = Math.max(-lo, hi);
    let power10 = 0;
    while (power10 < 3 && big >= 1000 ** (power10 + 1)) power10 += 1;
    const unit = UNITS[base][power10];
    const per = 1000 ** power10;
    const text = (v) => (v === null || v === undefined ? "—"
      : `${number((v * factor) / per, lang, power10 ? 2 : 0)} ${unit}`);
    const common = { tickmode: "array", fixedrange: true, automargin: true };
    if (big === 0) {
      return { unit, text, layout: { ...common, range: [0, 1000 / factor], tickvals: [0], ticktext: [`0 ${unit}`] } };
    }
    const step = niceStep((hi - lo) / per, ticks);
    let digits = 0;
    while (digits < 4 && Math.abs(Math.round(step * 10 ** digits) - step * 10 ** digits) > 1e-6) digits += 1;
    const first = Math.floor(lo / per / step + 1e-9);
    const last = Math.ceil(hi / per / step - 1e-9);
    const tickvals = [];
    const ticktext = [];
    for (let k = first; k <= last; k += 1) {
      tickvals.push((k * step * per) / factor);
      const label = `${number(Math.abs(k * step), lang, digits)} ${unit}`;
      ticktext.push(k < 0 ? (selling ? message({}, selling, { watts: label }) : `-${label}`) : label);
    }
    return {
      unit, text, layout: { ...common, range: [tickvals[0], tickvals[tickvals.length - 1]], tickvals, ticktext },
    };
  }

  // Every how many of `count` labels to write so they fit `width` px at `px` each.
  const every = (count, width, px) => {
    const fits = Math.max(2, Math.floor(width / px));
    return [1, 2, 3, 4, 6, 12].find((k) => count / k <= fits) || Math.ceil(count / fits);
  };

  // A date axis of `count` periods (view "hour", "day" or "month") from `first` (a JST
  // wall-clock "YYYY-MM-DD[ HH:MM]"), `width` px wide: one tick a whole period or a round
  // number of them, as many as fit, so no date is written twice ("12/1 12/1 12/2").
  function timeAxis(view, first, count, width, lang) {
    const k = every(count, width, view === "month" ? (lang === "ja" ? 80 : 70) : (lang === "ja" ? 44 : 56));
    const formats = {
      hour: { tickformat: "%H:%M", hoverformat: "%H:%M", dtick: k * 3600e3 },
      day: {
        tickformat: lang === "ja" ? "%-m/%-d" : "%b %-d", hoverformat: "%Y-%m-%d",
        dtick: (k > 4 ? 7 * Math.ceil(k / 7) : k) * 86400e3,
      },
      month: { tickformat: lang === "ja" ? "%Y年%-m月" : "%b %Y", hoverformat: "%Y-%m", dtick: `M${k}` },
    };
    return { type: "date", tick0: first, ticklabelmode: "instant", ticklabelstandoff: 6, ...formats[view] };
  }

  // Once drawn, the x axis's ticks spaced again for the plot's real width (the margins
  // plotly gave the other axes' labels are known only then).
  async function fitTimeAxis(element, view, first, count, lang) {
    const width = element._fullLayout && element._fullLayout.xaxis && element._fullLayout.xaxis._length;
    if (!width) return;
    const { dtick } = timeAxis(view, first, count, width, lang);
    if (dtick !== element.layout.xaxis.dtick) await Plotly.relayout(element, { "xaxis.dtick": dtick });
  }

  // Whether a period's value (the energy API's: start, wh, complete) is still running: this
  // hour, today, this month. Such a value is not a fall in use; charts draw it hatched.
  function running(view, value, now = Date.now()) {
    if (value.wh === null || value.complete) return false;
    const start = Date.parse(value.start);
    let end;
    if (view === "hour") end = start + 3600e3;
    else if (view === "day") end = start + 86400e3;
    else {
      const [year, month] = [Number(value.start.slice(0, 4)), Number(value.start.slice(5, 7))];
      const next = month === 12 ? `${year + 1}-01` : `${year}-${String(month + 1).padStart(2, "0")}`;
      end = Date.parse(`${next}-01T00:00:00+09:00`);
    }
    return start <= now && now < end;
  }

  // The bar marker for values some of which are still running: those hatched and pale.
  const barMarker = (color, unfinished) => ({
    color,
    opacity: unfinished.map((u) => (u ? 0.45 : 1)),
    pattern: { shape: unfinished.map((u) => (u ? "/" : "")), fgcolor: color, solidity: 0.3 },
  });

  // Narrow screens (a phone): charts drop axis titles, their ticks carry the unit.
  const narrow = () => window.matchMedia("(max-width: 600px)").matches;

  return {
    readJSON, message, number, kwh, watts, kw, power, datetime, slot, clock, csrfToken, api, ApiError, cell,
    valueAxis, every, timeAxis, fitTimeAxis, running, barMarker, narrow,
  };
})();
