-- Tern storage schema, version 1. Tables are STRICT so a wrongly typed bind fails loudly
-- instead of being stored with the wrong affinity.

CREATE TABLE accounts (
    host    TEXT    NOT NULL,
    user    TEXT    NOT NULL,
    record  TEXT    NOT NULL, -- AccountRecord as JSON: SCRAM keys only, never a password
    created INTEGER NOT NULL, -- Unix seconds, duplicated from the record for ad-hoc queries
    PRIMARY KEY (host, user)
) STRICT;

CREATE TABLE keyval (
    host  TEXT NOT NULL,
    store TEXT NOT NULL,
    user  TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (host, store, user)
) STRICT;

-- Account deletion removes a user's rows from every store; without this it scans the table.
CREATE INDEX keyval_user ON keyval (host, user);

CREATE TABLE map (
    host  TEXT NOT NULL,
    store TEXT NOT NULL,
    user  TEXT NOT NULL,
    "key" TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (host, store, user, "key")
) STRICT;

CREATE INDEX map_user ON map (host, user);

-- AUTOINCREMENT keeps seq strictly increasing even after the newest rows are deleted, so seq
-- stays a faithful insertion order for ties on "when".
CREATE TABLE archive (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    host     TEXT    NOT NULL,
    store    TEXT    NOT NULL,
    user     TEXT    NOT NULL,
    id       TEXT    NOT NULL,
    "when"   INTEGER NOT NULL, -- Unix microseconds
    with_jid TEXT    NOT NULL,
    data     BLOB    NOT NULL,
    UNIQUE (host, store, user, id)
) STRICT;

-- The two query shapes: a user's archive in time order, optionally narrowed to one peer.
CREATE INDEX archive_when ON archive (host, store, user, "when", seq);
CREATE INDEX archive_with ON archive (host, store, user, with_jid, "when", seq);
-- Account deletion (all stores of one user) and expiry (one store, every user).
CREATE INDEX archive_user ON archive (host, user);
CREATE INDEX archive_expire ON archive (store, "when");
