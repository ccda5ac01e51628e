-- Durable workflows, alerts and the delivery outbox. Times are Unix milliseconds (UTC) in *_ms columns.

-- One row per workflow run. ``version`` and ``step_names`` record the step list the run started with, so
-- that a changed definition never replays an old journal.
CREATE TABLE workflows (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    step_names TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
    input TEXT NOT NULL,
    next_step INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    finished_ms INTEGER
);
CREATE INDEX workflows_status ON workflows (status, updated_ms);
CREATE INDEX workflows_finished ON workflows (finished_ms);

-- The journal: one row per finished step, written before the next step starts.
CREATE TABLE workflow_steps (
    workflow_id INTEGER NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    result TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    started_ms INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, position)
) WITHOUT ROWID;

-- Where each event consumer has read up to.
CREATE TABLE event_cursors (
    name TEXT PRIMARY KEY,
    last_event_id INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);

CREATE TABLE alerts (
    id INTEGER PRIMARY KEY,
    workflow_id INTEGER,
    rule TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('new', 'escalation')),
    dedupe_key TEXT NOT NULL UNIQUE,
    wallet TEXT,
    market_id INTEGER,
    source_event_id INTEGER NOT NULL,
    event_id INTEGER,
    title TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX alerts_created ON alerts (created_ms);
CREATE INDEX alerts_workflow ON alerts (workflow_id);

-- The last alert per (rule, wallet, market); '' and 0 stand for "any wallet" and "any market".
-- max_amount is the largest amount alerted in the current cooldown, as exact decimal text.
CREATE TABLE alert_cooldowns (
    rule TEXT NOT NULL,
    wallet TEXT NOT NULL,
    market_id INTEGER NOT NULL,
    last_alert_ms INTEGER NOT NULL,
    max_amount TEXT,
    PRIMARY KEY (rule, wallet, market_id)
) WITHOUT ROWID;

-- One row per (alert, channel, target). Rows of one digest email share message_id.
-- data_started_ms is set just before the SMTP DATA command: a crash after it leaves the outcome unknown.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    channel TEXT NOT NULL CHECK (channel IN ('email', 'webhook')),
    target TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'sending', 'sent', 'unknown', 'failed', 'cancelled')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error TEXT,
    message_id TEXT,
    batch_size INTEGER,
    data_started_ms INTEGER,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    sent_ms INTEGER,
    UNIQUE (alert_id, channel, target)
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_ms);
CREATE INDEX outbox_target_sent ON outbox (channel, target, sent_ms);
