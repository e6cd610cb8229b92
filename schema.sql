-- wxlogin schema.
--
-- Applied by store::migrate, one "-- migration N" section at a time, each in a single
-- BEGIN IMMEDIATE transaction, with PRAGMA user_version recording the last one applied.
-- Never edit a released section: append a new one. A database whose user_version is
-- higher than the last section here was written by a newer wxlogin and is refused.

-- migration 1
CREATE TABLE users (
    id             INTEGER PRIMARY KEY,
    app            TEXT    NOT NULL,          -- the app's name in appliance.toml
    openid         TEXT    NOT NULL,
    unionid        TEXT,                      -- kept once WeChat sends it
    session_key    TEXT,                      -- WeChat's, newest wins; never leaves the server
    session_key_at INTEGER,
    nickname       TEXT,
    avatar_url     TEXT,
    gender         INTEGER,
    phone_number   TEXT,
    country_code   TEXT,
    created_at     INTEGER NOT NULL,
    last_login_at  INTEGER NOT NULL,
    UNIQUE (app, openid)
);
CREATE INDEX users_unionid ON users (unionid) WHERE unionid IS NOT NULL;

-- A user may hold many sessions (one per device or login). Only SHA-256 of the token is
-- stored, so a copy of this file cannot be used to impersonate anyone.
CREATE TABLE sessions (
    token_hash     BLOB    PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     INTEGER NOT NULL,
    last_seen_at   INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,          -- idle expiry, slid forward on use
    max_expires_at INTEGER NOT NULL           -- absolute cap from login
) WITHOUT ROWID;
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- Successful code exchanges, kept for the replay window so that a retried login with
-- the same code gets a session instead of WeChat's 40163. Only a hash of the code.
CREATE TABLE used_codes (
    app         TEXT    NOT NULL,
    code_hash   BLOB    NOT NULL,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    new_user    INTEGER NOT NULL,
    used_at     INTEGER NOT NULL,
    PRIMARY KEY (app, code_hash)
) WITHOUT ROWID;

-- Each app's WeChat access token, so that a restart reuses a valid one.
CREATE TABLE access_tokens (
    app         TEXT    PRIMARY KEY,
    token       TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL,
    fetched_at  INTEGER NOT NULL
);

-- Logins per app per UTC day, for `wxlogin stats`.
CREATE TABLE login_days (
    app         TEXT    NOT NULL,
    day         TEXT    NOT NULL,             -- YYYY-MM-DD, UTC
    logins      INTEGER NOT NULL,
    PRIMARY KEY (app, day)
) WITHOUT ROWID;

-- migration 2
-- A used code may be replayed only by its first caller, and only a few times (see
-- POST /v1/login in the API notes): the caller's Idempotency-Key as SHA-256 when it sent
-- one (then only that key replays), else its client IP; and the replays answered so far.
-- Records from before this migration have neither, and replay for no one.
ALTER TABLE used_codes ADD COLUMN key_hash BLOB;
ALTER TABLE used_codes ADD COLUMN client_ip TEXT;
ALTER TABLE used_codes ADD COLUMN replays INTEGER NOT NULL DEFAULT 0;
-- (No index on user_id: revoking scans this table, which holds only the last few minutes'
-- codes, rather than every login paying for one more index.)

-- A new login beyond session.max_per_user ends the user's least recently used sessions:
-- this index finds them (and still serves every lookup by user_id, so it replaces the old one).
CREATE INDEX sessions_user_seen ON sessions (user_id, last_seen_at);
DROP INDEX sessions_user;

-- migration 3
-- WeChat Pay orders. `id` only orders them (newest first, and `before` paging); WeChat
-- Pay knows an order by out_trade_no. Amounts in fen. Financial records: no user with
-- orders can be deleted (the foreign key has no ON DELETE), and nothing deletes orders.
CREATE TABLE orders (
    id              INTEGER PRIMARY KEY,
    out_trade_no    TEXT    NOT NULL UNIQUE,
    app             TEXT    NOT NULL,
    user_id         INTEGER NOT NULL REFERENCES users (id),
    openid          TEXT    NOT NULL,          -- the payer, as WeChat Pay is told
    product         TEXT,                      -- a [[pay.products]] id, or NULL (server-made)
    description     TEXT    NOT NULL,
    amount          INTEGER NOT NULL CHECK (amount > 0),
    currency        TEXT    NOT NULL DEFAULT 'CNY',
    attach          TEXT,
    state           TEXT    NOT NULL CHECK (state IN ('created', 'paid', 'closed', 'refunded')),
    transaction_id  TEXT,                      -- WeChat Pay's, once paid
    paid_at         INTEGER,
    expires_at      INTEGER NOT NULL,          -- the time_expire sent to WeChat Pay
    refunded_amount INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    prepay_id       TEXT,                      -- the latest, and when it was obtained
    prepay_at       INTEGER,
    closed_at       INTEGER,
    -- While created: when to ask WeChat Pay next (notifications are not guaranteed),
    -- and how many times it was asked (the backoff). NULL once the order leaves created.
    next_query_at   INTEGER,
    queries         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX orders_user ON orders (user_id, id);
CREATE INDEX orders_due ON orders (next_query_at) WHERE state = 'created';
CREATE INDEX orders_expiring ON orders (expires_at) WHERE state = 'created';
CREATE UNIQUE INDEX orders_transaction ON orders (transaction_id) WHERE transaction_id IS NOT NULL;

-- The webhook outbox: each event is written in the transaction that makes the change it
-- reports, and delivered later (at least once, in `seq` order for each order).
CREATE TABLE pay_events (
    id              TEXT    PRIMARY KEY,       -- random, opaque: receivers drop duplicates by it
    out_trade_no    TEXT    NOT NULL REFERENCES orders (out_trade_no),
    seq             INTEGER NOT NULL,          -- 1, 2, ... per order: delivery order
    type            TEXT    NOT NULL,          -- order.paid, order.closed, refund.succeeded, refund.failed
    created_at      INTEGER NOT NULL,
    data            TEXT    NOT NULL,          -- JSON: the Order (or Refund) as it was then
    delivered_at    INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    UNIQUE (out_trade_no, seq)
);
CREATE INDEX pay_events_pending ON pay_events (next_attempt_at) WHERE delivered_at IS NULL;

-- migration 4
-- Webhook delivery. Each attempt first leases its event (attempts + 1, next_attempt_at =
-- now + the lease, in one transaction), so a second delivery thread or a restart after a
-- crash sends it again only once the lease is over. An event still failing 3 days after
-- it was written (or after `wxlogin pay events retry`: give_up_at) is given up on:
-- failed_at, kept and listed, and no longer holds back its order's later events.
ALTER TABLE pay_events ADD COLUMN failed_at INTEGER;
ALTER TABLE pay_events ADD COLUMN give_up_at INTEGER;  -- NULL: created_at + 3 days
ALTER TABLE pay_events ADD COLUMN last_error TEXT;     -- what the last failed attempt got
DROP INDEX pay_events_pending;
CREATE INDEX pay_events_due ON pay_events (next_attempt_at) WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX pay_events_failed ON pay_events (failed_at) WHERE delivered_at IS NULL AND failed_at IS NOT NULL;

-- migration 5
-- WeChat Pay refunds. A refund is written (`processing`) BEFORE WeChat Pay is asked, so
-- that a retry with the same out_refund_no finds it and never refunds twice; `refund_id`
-- is WeChat Pay's, NULL until WeChat Pay has accepted the refund. Financial records:
-- nothing deletes a refund WeChat Pay accepted.
CREATE TABLE refunds (
    id              INTEGER PRIMARY KEY,
    out_refund_no   TEXT    NOT NULL UNIQUE,
    out_trade_no    TEXT    NOT NULL REFERENCES orders (out_trade_no),
    amount          INTEGER NOT NULL CHECK (amount > 0),  -- fen
    reason          TEXT,
    state           TEXT    NOT NULL CHECK (state IN ('processing', 'succeeded', 'closed', 'abnormal')),
    refund_id       TEXT,
    created_at      INTEGER NOT NULL,
    succeeded_at    INTEGER,
    -- While processing or abnormal (neither is final): when to ask WeChat Pay next, and
    -- how many times it was asked (the backoff). NULL once final.
    next_query_at   INTEGER,
    queries         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX refunds_order ON refunds (out_trade_no, id);
CREATE INDEX refunds_due ON refunds (next_query_at) WHERE next_query_at IS NOT NULL;
