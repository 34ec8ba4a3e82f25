-- Castle settlement ledger, version 1 (SQLite 3, the embedded default; same model as PostgreSQL).
-- Integers only: amounts in minor units, prices in ticks, quantities in lots, times in ns.

CREATE TABLE settlement_cursor (
    id          SMALLINT PRIMARY KEY CHECK (id = 1),
    applied_seq BIGINT NOT NULL CHECK (applied_seq >= 0),
    updated_at  TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
INSERT INTO settlement_cursor (id, applied_seq) VALUES (1, 0);

-- One row per movement on an (account, asset) pair, with its three sub-ledger legs;
-- per seq and asset, available + locked + external over all rows sums to zero.
CREATE TABLE ledger_entries (
    seq       BIGINT   NOT NULL,
    idx       INTEGER  NOT NULL,
    ts        BIGINT   NOT NULL,
    account   BIGINT   NOT NULL,
    asset     BIGINT   NOT NULL,
    kind      SMALLINT NOT NULL,
    reference BIGINT   NOT NULL,
    available BIGINT   NOT NULL,
    locked    BIGINT   NOT NULL,
    external  BIGINT   NOT NULL,
    PRIMARY KEY (seq, idx)
);
CREATE INDEX ledger_entries_account ON ledger_entries (account, asset, seq);

CREATE TABLE balances (
    account   BIGINT NOT NULL,
    asset     BIGINT NOT NULL,
    available BIGINT NOT NULL CHECK (available >= 0),
    locked    BIGINT NOT NULL CHECK (locked >= 0),
    external  BIGINT NOT NULL,
    seq       BIGINT NOT NULL,
    PRIMARY KEY (account, asset)
);

CREATE TABLE fills (
    trade_id      BIGINT   PRIMARY KEY,
    seq           BIGINT   NOT NULL,
    idx           INTEGER  NOT NULL,
    ts            BIGINT   NOT NULL,
    instrument    BIGINT   NOT NULL,
    price         BIGINT   NOT NULL,
    qty           BIGINT   NOT NULL CHECK (qty > 0),
    aggressor     SMALLINT NOT NULL,
    maker_order   BIGINT   NOT NULL,
    taker_order   BIGINT   NOT NULL,
    maker_account BIGINT   NOT NULL,
    taker_account BIGINT   NOT NULL,
    maker_fee     BIGINT   NOT NULL CHECK (maker_fee >= 0),
    taker_fee     BIGINT   NOT NULL CHECK (taker_fee >= 0)
);
-- Unique by engine trade id (the primary key); (seq, idx) is unique by construction and
-- protected by the compare-and-set on the cursor, so it carries no index of its own.
CREATE INDEX fills_maker_account ON fills (maker_account, trade_id);
CREATE INDEX fills_taker_account ON fills (taker_account, trade_id);
CREATE INDEX fills_instrument_ts ON fills (instrument, ts);

CREATE TABLE orders (
    order_id        BIGINT   PRIMARY KEY,
    account         BIGINT   NOT NULL,
    instrument      BIGINT   NOT NULL,
    client_order_id TEXT     NOT NULL,
    side            SMALLINT NOT NULL,
    kind            SMALLINT NOT NULL,
    price           BIGINT   NOT NULL,
    stop_price      BIGINT   NOT NULL,
    qty             BIGINT   NOT NULL,
    tif             SMALLINT NOT NULL,
    status          SMALLINT NOT NULL,
    cancel_reason   SMALLINT NOT NULL,
    filled          BIGINT   NOT NULL CHECK (filled >= 0),
    leaves          BIGINT   NOT NULL CHECK (leaves >= 0),
    created_seq     BIGINT   NOT NULL,
    created_ts      BIGINT   NOT NULL,
    updated_seq     BIGINT   NOT NULL,
    updated_ts      BIGINT   NOT NULL
);
CREATE INDEX orders_account ON orders (account, order_id);
CREATE INDEX orders_instrument_ts ON orders (instrument, created_ts);
CREATE INDEX orders_open ON orders (order_id) WHERE status = 0;
