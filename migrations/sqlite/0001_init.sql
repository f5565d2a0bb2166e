-- Times are INTEGER milliseconds since the Unix epoch (UTC), so the same schema maps onto
-- PostgreSQL's BIGINT without conversion.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE actors (
    name                 TEXT PRIMARY KEY,
    last_run_at          INTEGER,
    last_success_at      INTEGER,
    last_outcome         TEXT,
    next_run_at          INTEGER,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    circuit              TEXT NOT NULL DEFAULT 'closed',
    circuit_open_until   INTEGER,
    ever_succeeded       INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    actor       TEXT NOT NULL,
    narrative   TEXT,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    outcome     TEXT NOT NULL,
    error       TEXT
);
CREATE INDEX runs_by_actor ON runs (actor, id);

CREATE TABLE act_outputs (
    run_id        INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    act           TEXT NOT NULL,
    provider      TEXT NOT NULL,
    model         TEXT NOT NULL,
    output        TEXT NOT NULL,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    PRIMARY KEY (run_id, position)
);

CREATE TABLE posts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    target       TEXT NOT NULL,
    content      TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    status       TEXT NOT NULL,
    source_actor TEXT,
    source_run   INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    posted_at    INTEGER,
    message_ids  TEXT NOT NULL DEFAULT '',
    parts_sent   INTEGER NOT NULL DEFAULT 0,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    UNIQUE (target, content_hash)
);
CREATE INDEX posts_by_status ON posts (target, status, id);
