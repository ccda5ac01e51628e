// DOM building and formatting helpers for the dashboard. Every piece of data reaches the page through
// textContent or an attribute value, never as HTML, so no stored string can inject markup or script.

/**
 * Create an element. `attrs` may contain `class`, `text`, `title` and other attributes, whose values are
 * set with setAttribute and so stay text. Children are nodes or strings; null children are skipped.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function byId(id) {
  return document.getElementById(id);
}

/** Replace the rows of a table body with one row per item; `emptyText` fills an empty table. */
export function fillTable(tbody, items, renderRow, emptyText) {
  if (items.length === 0) {
    const columns = tbody.closest("table").querySelectorAll("thead th").length || 1;
    tbody.replaceChildren(el("tr", {}, el("td", { class: "empty", colspan: columns, text: emptyText })));
    return;
  }
  tbody.replaceChildren(...items.map(renderRow));
}

export function badge(text, tone, title) {
  return el("span", { class: `badge ${tone || ""}`, text, title });
}

const OUTCOME_TONES = {
  success: "ok",
  sent: "ok",
  succeeded: "ok",
  running: "info",
  pending: "info",
  sending: "info",
  failure: "bad",
  failed: "bad",
  timeout: "bad",
  unknown: "warn",
  cancelled: "muted",
  missed: "warn",
  skipped: "warn",
};

export function outcomeTone(outcome) {
  return OUTCOME_TONES[outcome] || "muted";
}

// Times.

export function relativeTime(ms, now = Date.now()) {
  if (ms === null || ms === undefined) return "never";
  const seconds = Math.round((ms - now) / 1000);
  const span = Math.abs(seconds);
  let text;
  if (span < 5) return "just now";
  if (span < 90) text = `${span} s`;
  else if (span < 5400) text = `${Math.round(span / 60)} min`;
  else if (span < 172800) text = `${(span / 3600).toFixed(1)} h`;
  else text = `${(span / 86400).toFixed(1)} d`;
  return seconds < 0 ? `${text} ago` : `in ${text}`;
}

export function clockTime(ms) {
  if (ms === null || ms === undefined) return "";
  return new Date(ms).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

/** Create a <time> element whose relative text the ticker keeps current, with the local date as its title. */
export function timeCell(ms, prefix = "") {
  if (ms === null || ms === undefined) return el("span", { class: "muted", text: "never" });
  const node = el("time", { "data-ts": ms, "data-prefix": prefix, datetime: new Date(ms).toISOString(), title: clockTime(ms) });
  node.textContent = prefix + relativeTime(ms);
  return node;
}

export function refreshTimes(root = document) {
  const now = Date.now();
  for (const node of root.querySelectorAll("time[data-ts]")) {
    node.textContent = (node.dataset.prefix || "") + relativeTime(Number(node.dataset.ts), now);
  }
}

export function duration(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120000) return `${(ms / 1000).toFixed(1)} s`;
  return `${(ms / 60000).toFixed(1)} min`;
}

export function seconds(value) {
  return duration(Math.round(value * 1000));
}

/** Format a span of time given in seconds in its largest whole unit: "90 s", "15 min", "24 h", "3 d". */
export function span(value) {
  if (value < 120) return `${Math.round(value)} s`;
  if (value < 7200) return `${Math.round(value / 60)} min`;
  if (value < 172800) return `${Math.round(value / 3600)} h`;
  return `${Math.round(value / 86400)} d`;
}

// Numbers. Amounts arrive as exact decimal strings; they are rounded here for display only.

const USD = new Intl.NumberFormat(undefined, { style: "currency", currency: "USD", maximumFractionDigits: 0 });
const COUNT = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

export function usd(value) {
  if (value === null || value === undefined || value === "") return "";
  const number = Number(value);
  return Number.isFinite(number) ? USD.format(number) : String(value);
}

export function count(value) {
  return value === null || value === undefined ? "" : COUNT.format(Number(value));
}

/** Format a probability price (0 to 1) as cents, such as "53.4¢". */
export function price(value) {
  if (value === null || value === undefined || value === "") return "";
  const number = Number(value);
  return Number.isFinite(number) ? `${(number * 100).toFixed(1)}¢` : String(value);
}

/** Format a price change in percentage points, with its sign. */
export function points(value) {
  const number = Number(value) * 100;
  if (!Number.isFinite(number)) return String(value);
  return `${number > 0 ? "+" : ""}${number.toFixed(1)} pt`;
}

export function percent(value) {
  if (value === null || value === undefined || value === "") return "";
  const number = Number(value);
  return Number.isFinite(number) ? `${(number * 100).toFixed(0)}%` : String(value);
}

export function shortAddress(address) {
  return address && address.length > 12 ? `${address.slice(0, 6)}…${address.slice(-4)}` : address || "";
}

/** Show a wallet by its label when it has one, with the full address in the tooltip. */
export function walletCell(address, label) {
  return el("span", { class: "wallet", title: address }, label ? label : shortAddress(address));
}
