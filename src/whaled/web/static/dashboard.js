// The dashboard's entry point: periodic refreshes of the summaries, the live feed of whale trades, the
// token prompt and the retry buttons.

import { Api, AuthRequired, storeToken, takeToken } from "./api.js";
import { Feed } from "./feed.js";
import {
  renderGovernor,
  renderHealth,
  renderJobs,
  renderMarkets,
  renderTrades,
  renderWallets,
  renderWorkflows,
} from "./render.js";
import { byId, refreshTimes } from "./util.js";

const BASE = "/api/v1/dashboard";
const MAX_TRADES = 50;
// Refresh periods of the summaries, in milliseconds.
const PERIODS = { status: 5000, workflows: 10000, wallets: 30000, markets: 30000 };

const api = new Api(takeToken());
const trades = new Map();
// Trade ids that arrived live, with their arrival time; their rows flash for FRESH_MS.
const fresh = new Map();
const FRESH_MS = 3000;
const labels = new Map();
const timers = {};
let governorSample = null;
let governorRate = null;

// Refreshes.

async function loadStatus() {
  const body = await api.get(`${BASE}/status`);
  renderHealth(body.health);
  renderJobs(body.jobs);
  measureRate(body.governor, body.now_ms);
  renderGovernor(body.governor, governorRate);
  document.body.dataset.loaded = "true";
}

function measureRate(governor, now) {
  if (!governor) return;
  const sample = { at: now, requests: governor.requests_granted };
  if (governorSample && sample.at > governorSample.at) {
    const rate = ((sample.requests - governorSample.requests) * 1000) / (sample.at - governorSample.at);
    // A moving average, so that one burst does not make the meter jump.
    governorRate = governorRate === null ? rate : 0.5 * governorRate + 0.5 * rate;
  }
  governorSample = sample;
}

async function loadWorkflows() {
  renderWorkflows(await api.get(`${BASE}/workflows`), retry);
}

async function loadWallets() {
  const body = await api.get(`${BASE}/wallets`);
  for (const wallet of [...body.coverage, ...body.leaderboard]) {
    if (wallet.label) labels.set(wallet.address, wallet.label);
  }
  renderWallets(body);
}

async function loadMarkets() {
  renderMarkets(await api.get(`${BASE}/markets`));
}

async function loadTrades() {
  const body = await api.get("/api/v1/trades?whale=true&limit=" + MAX_TRADES);
  for (const row of body.trades) addTrade({ ...row, id: row.id });
  showTrades();
  document.body.dataset.trades = "loaded";
}

const LOADERS = { status: loadStatus, workflows: loadWorkflows, wallets: loadWallets, markets: loadMarkets };

async function refresh(name) {
  clearTimeout(timers[name]);
  try {
    await LOADERS[name]();
    setConnection(true);
  } catch (error) {
    if (error instanceof AuthRequired) {
      askForToken();
      return;
    }
    setConnection(false, error.message);
  }
  // The request rate needs two samples: take the second one soon after the first.
  const period = name === "status" && governorRate === null ? 1500 : PERIODS[name];
  if (!document.hidden) timers[name] = setTimeout(() => refresh(name), period);
}

function refreshAll() {
  for (const name of Object.keys(LOADERS)) refresh(name);
}

function setConnection(ok, message) {
  const node = byId("updated");
  node.textContent = ok ? `updated ${new Date().toLocaleTimeString()}` : "server unreachable";
  node.title = ok ? "" : message || "";
  node.className = ok ? "muted" : "error";
}

// Whale trades: the REST list first, then each trade.whale event from the feed.

function addTrade(trade) {
  trades.set(trade.id, trade);
}

function showTrades() {
  const newest = [...trades.values()].sort((a, b) => b.created_at_ms - a.created_at_ms || b.id - a.id);
  for (const old of newest.slice(MAX_TRADES)) trades.delete(old.id);
  const now = Date.now();
  for (const [id, arrived] of fresh) {
    if (now - arrived > FRESH_MS) fresh.delete(id);
  }
  renderTrades(newest.slice(0, MAX_TRADES), labels, new Set(fresh.keys()));
}

// Refreshes that an event triggers wait this long, so that a burst of events costs one request.
const EVENT_DEBOUNCE_MS = 300;
const pending = {};

function soon(name) {
  clearTimeout(pending[name]);
  pending[name] = setTimeout(() => refresh(name), EVENT_DEBOUNCE_MS);
}

function onEvent(frame) {
  if (frame.type === "trade.whale") {
    const trade = { ...frame.payload, id: frame.payload.trade_id };
    if (!trades.has(trade.id)) fresh.set(trade.id, Date.now());
    addTrade(trade);
    showTrades();
  } else if (frame.topic === "job") {
    soon("status");
  } else if (frame.topic === "alert") {
    soon("workflows");
  }
}

const FEED_STATES = { live: "live", connecting: "connecting…", reconnecting: "reconnecting…" };

function onFeedState(state) {
  const node = byId("feed-state");
  node.textContent = FEED_STATES[state] || state;
  node.className = `feed ${state}`;
  document.body.dataset.feed = state;
}

const feed = new Feed(["whale-trades", "jobs", "alerts"], {
  onEvent,
  onState: onFeedState,
  // The events after our position are gone: reload the list instead of replaying.
  onReset: () => loadTrades().catch(() => undefined),
}, api.token);

// Retry buttons.

async function retry(kind, id, button) {
  button.disabled = true;
  const note = byId("retry-result");
  try {
    const body = await api.post(`${BASE}/${kind}/${id}/retry`);
    note.textContent = `${kind === "workflows" ? "Workflow" : "Delivery"} ${id}: ${body.message}`;
    note.className = "note ok";
  } catch (error) {
    note.textContent = `Retry of ${id} failed: ${error.message}`;
    note.className = "note error";
  }
  refresh("workflows");
}

// The access token prompt, shown when the server answers 401.

function askForToken() {
  const form = byId("token-form");
  if (!form.hidden) return;
  form.hidden = false;
  byId("token-input").focus();
}

byId("token-form").addEventListener("submit", (submit) => {
  submit.preventDefault();
  const token = byId("token-input").value.trim();
  storeToken(token);
  api.token = token || null;
  byId("token-form").hidden = true;
  feed.restart(api.token);
  refreshAll();
  loadTrades().catch(() => undefined);
});

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refreshAll();
});

setInterval(() => refreshTimes(), 5000);
refreshAll();
feed.start();
loadTrades().catch((error) => {
  if (error instanceof AuthRequired) askForToken();
});
// For tests and the browser console: the feed, to watch or restart it.
window.whaledFeed = feed;
