-- Times are Unix milliseconds (UTC) in columns named *_ms.
-- Prices, shares and amounts are exact decimal strings (TEXT); sums and comparisons run on Decimal in Python.
-- notional_micro is a rounded integer copy of a USD amount, used only for SQL ordering and filtering.

CREATE TABLE markets (
    market_id INTEGER PRIMARY KEY,
    root_market_id INTEGER NOT NULL,
    is_root INTEGER NOT NULL,
    market_type INTEGER,
    title TEXT NOT NULL,
    root_title TEXT NOT NULL,
    status INTEGER NOT NULL,
    status_name TEXT NOT NULL,
    yes_label TEXT NOT NULL DEFAULT '',
    no_label TEXT NOT NULL DEFAULT '',
    yes_token_id TEXT,
    no_token_id TEXT,
    condition_id TEXT,
    question_id TEXT,
    result_token_id TEXT,
    winning_outcome TEXT,
    volume TEXT NOT NULL DEFAULT '0',
    volume_24h TEXT,
    volume_7d TEXT,
    yes_price TEXT,
    quote_token TEXT,
    chain_id TEXT,
    slug TEXT,
    created_at_ms INTEGER,
    cutoff_at_ms INTEGER,
    resolved_at_ms INTEGER,
    first_seen_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX markets_root ON markets (root_market_id);
CREATE INDEX markets_status ON markets (status);

CREATE TABLE market_snapshots (
    market_id INTEGER NOT NULL,
    taken_ms INTEGER NOT NULL,
    volume TEXT NOT NULL,
    volume_24h TEXT,
    yes_price TEXT,
    PRIMARY KEY (market_id, taken_ms)
) WITHOUT ROWID;
CREATE INDEX market_snapshots_taken ON market_snapshots (taken_ms);

CREATE TABLE wallets (
    address TEXT PRIMARY KEY,
    label TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL CHECK (source IN ('config', 'discovery', 'cli')),
    tracked INTEGER NOT NULL DEFAULT 1,
    added_ms INTEGER NOT NULL,
    discovered_rank INTEGER,
    is_whale INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE trades (
    id INTEGER PRIMARY KEY,
    wallet TEXT NOT NULL,
    tx_hash TEXT NOT NULL,
    market_id INTEGER NOT NULL,
    root_market_id INTEGER NOT NULL,
    market_title TEXT NOT NULL,
    root_market_title TEXT NOT NULL,
    side TEXT NOT NULL,
    outcome TEXT NOT NULL,
    outcome_side INTEGER NOT NULL,
    price TEXT NOT NULL,
    shares TEXT NOT NULL,
    amount TEXT NOT NULL,
    fee TEXT NOT NULL,
    profit TEXT NOT NULL,
    quote_token TEXT NOT NULL,
    quote_token_usd_price TEXT NOT NULL,
    usd_amount_raw TEXT,
    notional_usd TEXT NOT NULL,
    notional_micro INTEGER NOT NULL,
    is_whale INTEGER NOT NULL,
    status INTEGER NOT NULL,
    chain_id TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    stored_ms INTEGER NOT NULL,
    -- The public rows hide tradeNo and one transaction may hold several fills, so the key is the
    -- transaction hash plus the fill's own fields, per wallet.
    UNIQUE (wallet, tx_hash, market_id, outcome_side, side, price, shares)
);
CREATE INDEX trades_wallet_created ON trades (wallet, created_at_ms);
CREATE INDEX trades_created ON trades (created_at_ms);
CREATE INDEX trades_market ON trades (market_id, created_at_ms);

CREATE TABLE sync_cursors (
    wallet TEXT PRIMARY KEY,
    newest_created_ms INTEGER,
    newest_trade_id INTEGER,
    last_synced_ms INTEGER,
    last_error TEXT,
    last_error_ms INTEGER
);

CREATE TABLE sync_gaps (
    id INTEGER PRIMARY KEY,
    wallet TEXT NOT NULL,
    older_than_ms INTEGER NOT NULL,
    newer_than_ms INTEGER,
    recorded_ms INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX sync_gaps_wallet ON sync_gaps (wallet);

CREATE TABLE wallet_stats (
    wallet TEXT PRIMARY KEY,
    computed_ms INTEGER NOT NULL,
    trade_count INTEGER NOT NULL,
    volume_24h TEXT NOT NULL,
    volume_7d TEXT NOT NULL,
    volume_30d TEXT NOT NULL,
    volume_30d_micro INTEGER NOT NULL,
    markets_traded INTEGER NOT NULL,
    realized_pnl TEXT NOT NULL,
    wins INTEGER NOT NULL,
    losses INTEGER NOT NULL,
    win_rate TEXT,
    open_positions INTEGER NOT NULL,
    open_value TEXT NOT NULL,
    unrealized_pnl TEXT NOT NULL,
    is_whale INTEGER NOT NULL,
    rank INTEGER
);

CREATE TABLE positions (
    wallet TEXT NOT NULL,
    market_id INTEGER NOT NULL,
    outcome_side INTEGER NOT NULL,
    root_market_id INTEGER NOT NULL,
    market_title TEXT NOT NULL,
    root_market_title TEXT NOT NULL,
    outcome TEXT NOT NULL,
    token_id TEXT NOT NULL,
    market_status INTEGER NOT NULL,
    shares_owned TEXT NOT NULL,
    shares_frozen TEXT NOT NULL,
    avg_entry_price TEXT NOT NULL,
    current_value TEXT NOT NULL,
    unrealized_pnl TEXT NOT NULL,
    claim_status INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (wallet, market_id, outcome_side)
) WITHOUT ROWID;

CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    type TEXT NOT NULL,
    wallet TEXT,
    market_id INTEGER,
    payload TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX events_created ON events (created_ms);

CREATE TABLE job_runs (
    id INTEGER PRIMARY KEY,
    job TEXT NOT NULL,
    trigger TEXT NOT NULL,
    scheduled_ms INTEGER,
    started_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    outcome TEXT NOT NULL
        CHECK (outcome IN ('running', 'success', 'failure', 'timeout', 'cancelled', 'missed', 'skipped')),
    items INTEGER NOT NULL DEFAULT 0,
    api_calls INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    details TEXT
);
CREATE INDEX job_runs_job ON job_runs (job, started_ms);

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
