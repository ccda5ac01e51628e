// Renderers: each takes one JSON body of /api/v1/dashboard/... and redraws its part of the page.

import {
  badge,
  byId,
  count,
  duration,
  el,
  fillTable,
  outcomeTone,
  percent,
  points,
  price,
  seconds,
  span,
  timeCell,
  usd,
  walletCell,
} from "./util.js";

// Health: the badge in the header and the list of problems.

export function renderHealth(health) {
  const node = byId("health");
  const problems = health.problems || [];
  node.textContent = problems.length ? `${problems.length} problem${problems.length > 1 ? "s" : ""}` : "Healthy";
  node.className = `health ${problems.length ? "bad" : "ok"}`;
  const section = byId("problems");
  section.hidden = problems.length === 0;
  byId("problem-list").replaceChildren(
    ...problems.map((problem) => el("li", {}, el("strong", { text: problem.kind.replace(/_/g, " ") }), " ", problem.message)),
  );
}

// Jobs.

function historyStrip(runs) {
  // Oldest on the left, so the strip reads like a timeline.
  const cells = [...runs].reverse().map((run) =>
    el("span", {
      class: `run ${outcomeTone(run.outcome)}`,
      title: `${run.outcome} · ${new Date(run.started_ms).toLocaleString()}${run.duration_ms !== null ? ` · ${duration(run.duration_ms)}` : ""}`,
    }),
  );
  return el("span", { class: "history", "aria-label": "recent runs, oldest first" }, ...cells);
}

function jobRow(job) {
  const last = job.last_run;
  const status = job.running
    ? badge("running", "info")
    : last
      ? badge(last.outcome, outcomeTone(last.outcome), last.error || undefined)
      : badge("not run yet", "muted");
  const nextRun = job.next_run ? timeCell(Date.parse(job.next_run)) : el("span", { class: "muted", text: job.enabled ? "" : "disabled" });
  return el(
    "tr",
    { class: job.stale ? "stale" : null, "data-job": job.name },
    el("td", {}, el("div", { class: "name", text: job.name }), el("div", { class: "sub opt", text: job.trigger })),
    el("td", {}, status),
    el("td", { class: "last-success", "data-label": "last success" }, job.stale ? badge("stale", "bad", `bound ${span(job.bound_s)}`) : null, " ", timeCell(job.last_success_ms)),
    el("td", { class: "opt" }, last ? timeCell(last.started_ms) : ""),
    el("td", { class: "num opt" }, last ? duration(last.duration_ms) : ""),
    el("td", { class: "opt" }, nextRun),
    el("td", {}, historyStrip(job.history || [])),
  );
}

export function renderJobs(jobs) {
  fillTable(byId("jobs-body"), jobs, jobRow, "no jobs");
  const errors = jobs.filter((job) => job.last_run && job.last_run.error && job.last_run.outcome !== "success");
  byId("job-errors").replaceChildren(
    ...errors.map((job) => el("li", {}, el("strong", { text: job.name }), ": ", job.last_run.error)),
  );
}

// The governor. `rate` is the measured request rate, or null before two samples exist.

function meter(value, limit) {
  const share = limit > 0 ? Math.min(1, value / limit) : 0;
  let tone = "ok";
  if (share > 0.9) tone = "bad";
  else if (share > 0.7) tone = "warn";
  const fill = el("div", { class: `fill ${tone}` });
  // Through the CSSOM: the page's Content-Security-Policy rejects style attributes.
  fill.style.width = `${(share * 100).toFixed(1)}%`;
  return el("div", { class: "meter", role: "meter", "aria-valuenow": value.toFixed(2), "aria-valuemin": 0, "aria-valuemax": limit }, fill);
}

function fact(label, ...value) {
  return el("div", { class: "fact" }, el("dt", { text: label }), el("dd", {}, ...value));
}

export function renderGovernor(governor, rate) {
  const root = byId("governor");
  if (!governor) {
    root.replaceChildren(el("p", { class: "muted", text: "The governor is not connected to this server." }));
    return;
  }
  const stateTone = governor.state === "running" ? "ok" : "bad";
  const used = rate === null ? "measuring…" : `${rate.toFixed(2)} of ${governor.rate_per_s} requests/s`;
  const queue = Object.entries(governor.queue_depth).map(([priority, depth]) =>
    el("span", { class: `chip ${depth > 0 ? "info" : ""}` }, priority.toLowerCase(), " ", el("b", { text: depth })),
  );
  const pauses = Object.entries(governor.pauses).map(([kind, total]) => `${kind.replace(/_/g, " ")} ${total}`).join(" · ");
  const state = [badge(governor.state, stateTone)];
  if (governor.state !== "running") {
    state.push(" ", governor.state_reason || "");
    if (governor.pause_remaining_s > 0) state.push(` (${seconds(governor.pause_remaining_s)} left)`);
  }
  root.replaceChildren(
    fact("Rate used", el("div", { class: "rate" }, meter(rate || 0, governor.rate_per_s), el("span", { text: used }))),
    el("dl", { class: "facts" },
      fact("State", ...state),
      fact("Tokens", `${governor.tokens.toFixed(1)} of ${governor.burst}`),
      fact("In flight", `${governor.in_flight} of ${governor.max_in_flight}`),
      fact("Retries", count(governor.retries)),
      fact("Pauses", pauses || "none"),
      fact("Last pause", governor.last_pause_reason || "none"),
    ),
    fact("Requests by outcome", Object.entries(governor.outcomes).map(([outcome, total]) => `${outcome} ${count(total)}`).join(" · ")),
    fact("Queue by priority", el("div", { class: "chips" }, ...queue)),
  );
}

// Workflows and the outbox. `onRetry(kind, id, button)` sends the retry.

function chips(counts, order) {
  return order.map((status) =>
    el("span", { class: `chip ${counts[status] && status !== "succeeded" && status !== "sent" ? outcomeTone(status) : ""}` },
      status, " ", el("b", { text: counts[status] || 0 })),
  );
}

function retryButton(kind, id, onRetry) {
  const button = el("button", { type: "button", class: "retry", "data-kind": kind, "data-id": id, text: "Retry" });
  button.addEventListener("click", () => onRetry(kind, id, button));
  return button;
}

function workflowRow(run, onRetry) {
  const status = run.stuck ? badge("stuck", "bad", `no progress since ${new Date(run.updated_ms).toLocaleString()}`) : badge(run.status, outcomeTone(run.status));
  const canRetry = run.status === "failed" || run.status === "cancelled";
  return el("tr", {},
    el("td", { class: "num", text: run.id }),
    el("td", {}, status),
    el("td", {}, el("div", { text: run.next_step_name ? `at ${run.next_step_name}` : run.name }), run.error ? el("div", { class: "sub error", text: run.error }) : null),
    el("td", { class: "opt" }, timeCell(run.updated_ms)),
    el("td", {}, canRetry ? retryButton("workflows", run.id, onRetry) : null),
  );
}

function deliveryRow(delivery, onRetry) {
  const kind = delivery.workflow_id ? "workflows" : "deliveries";
  const id = delivery.workflow_id || delivery.id;
  return el("tr", {},
    el("td", { class: "num", text: delivery.id }),
    el("td", {}, badge(delivery.status === "unknown" ? "outcome unknown" : delivery.status, outcomeTone(delivery.status))),
    el("td", {}, el("div", { text: `${delivery.channel} to ${delivery.target}` }), el("div", { class: "sub", text: delivery.title }),
      delivery.last_error ? el("div", { class: "sub error", text: delivery.last_error }) : null),
    el("td", { class: "num opt", text: delivery.attempts }),
    el("td", {}, retryButton(kind, id, onRetry)),
  );
}

export function renderWorkflows(body, onRetry) {
  byId("workflow-counts").replaceChildren(...chips(body.workflows, ["pending", "running", "succeeded", "failed", "cancelled"]));
  byId("outbox-counts").replaceChildren(...chips(body.outbox, ["pending", "sending", "sent", "unknown", "failed", "cancelled"]));
  byId("outbox-due").replaceChildren(body.outbox_oldest_due_ms ? timeCell(body.outbox_oldest_due_ms, "oldest due delivery waiting since ") : "");
  fillTable(byId("workflows-body"), body.runs, (run) => workflowRow(run, onRetry), "No workflow is running, stuck or failed.");
  fillTable(byId("deliveries-body"), body.deliveries, (delivery) => deliveryRow(delivery, onRetry), "No delivery has an unknown outcome or failed.");
}

// Wallets: the leaderboard and the sync coverage.

function leaderRow(wallet, index) {
  const stats = wallet.stats || {};
  const pnl = Number(stats.realized_pnl);
  return el("tr", {},
    el("td", { class: "num", text: index + 1 }),
    el("td", {}, walletCell(wallet.address, wallet.label), wallet.is_whale ? badge("whale", "info") : null),
    el("td", { class: "num", text: usd(stats.volume_30d) }),
    el("td", { class: "num opt", text: usd(stats.volume_24h) }),
    el("td", { class: `num ${pnl > 0 ? "gain" : pnl < 0 ? "loss" : ""}`, text: usd(stats.realized_pnl) }),
    el("td", { class: "num opt", text: percent(stats.win_rate) }),
    el("td", { class: "num opt", text: count(stats.trade_count) }),
  );
}

function coverageRow(wallet) {
  const currentError = wallet.last_error && (wallet.last_synced_ms === null || wallet.last_error_ms >= wallet.last_synced_ms);
  return el("tr", { class: currentError ? "stale" : null },
    el("td", {}, walletCell(wallet.address, wallet.label), el("div", { class: "sub", text: wallet.source })),
    el("td", {}, timeCell(wallet.last_synced_ms)),
    el("td", { class: "opt" }, wallet.newest_created_ms ? timeCell(wallet.newest_created_ms) : el("span", { class: "muted", text: "none" })),
    el("td", {}, currentError ? el("span", { class: "error", text: wallet.last_error }) : el("span", { class: "muted", text: "none" })),
    el("td", { class: "num" }, wallet.gaps ? badge(String(wallet.gaps), "warn", `last gap recorded ${new Date(wallet.last_gap_ms).toLocaleString()}`) : "0"),
  );
}

export function renderWallets(body) {
  fillTable(byId("leaderboard-body"), body.leaderboard, leaderRow, "No wallet statistics yet.");
  fillTable(byId("coverage-body"), body.coverage, coverageRow, "No tracked wallets.");
}

// Markets with notable price moves.

function moveRow(move) {
  const change = Number(move.change);
  const title = move.root_title && move.root_title !== move.title ? `${move.root_title}: ${move.title}` : move.title;
  return el("tr", {},
    el("td", { class: "market", text: title, title: `market ${move.market_id}` }),
    el("td", { class: "num nowrap" }, price(move.price_then), " → ", price(move.yes_price)),
    el("td", { class: `num ${change > 0 ? "gain" : "loss"}`, text: points(move.change) }),
    el("td", { class: "num opt", text: usd(move.volume_24h) }),
  );
}

export function renderMarkets(body) {
  byId("moves-window").textContent = `last ${span(body.window_s)}, at least ${points(body.min_change).replace("+", "")}`;
  fillTable(byId("moves-body"), body.moves, moveRow, "No market moved that much.");
}

// Whale trades, newest first. `fresh` contains the ids that arrived live in the last few seconds; their rows flash.

export function renderTrades(trades, labels, fresh) {
  fillTable(byId("trades-body"), trades, (trade) => {
    const side = `${trade.side} ${trade.outcome}`;
    return el("tr", { class: fresh.has(trade.id) ? "fresh" : null, "data-trade-id": trade.id },
      el("td", {}, timeCell(trade.created_at_ms)),
      el("td", {}, walletCell(trade.wallet, trade.label || labels.get(trade.wallet))),
      el("td", { class: "market", text: trade.market_title, title: trade.root_market_title || trade.market_title }),
      el("td", { class: "opt nowrap", text: side }),
      el("td", { class: "num opt", text: price(trade.price) }),
      el("td", { class: "num strong", text: usd(trade.notional_usd) }),
    );
  }, "No whale trade yet.");
}

