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
