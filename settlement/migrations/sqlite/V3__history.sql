-- Castle settlement ledger (SQLite), version 3: the same columns and lookups as PostgreSQL
-- version 3 (PostgreSQL's version 2 changed only its own storage of ledger lines, so SQLite
-- has no version 2). SQLite has no BRIN: the (instrument, time) indexes stay.

ALTER TABLE orders ADD COLUMN expire_ts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN post_only BOOLEAN;
ALTER TABLE orders ADD COLUMN display_qty BIGINT;
ALTER TABLE orders ADD COLUMN stp SMALLINT;
ALTER TABLE orders ADD COLUMN notional BIGINT NOT NULL DEFAULT 0 CHECK (notional >= 0);

UPDATE orders SET notional = COALESCE((
    SELECT MIN(SUM(f.price * f.qty), 9223372036854775807) FROM (
        SELECT maker_order AS order_id, price, qty FROM fills
        UNION ALL
        SELECT taker_order, price, qty FROM fills
    ) f WHERE f.order_id = orders.order_id
), 0);

CREATE INDEX orders_client_order_id ON orders (account, client_order_id) WHERE client_order_id <> '';
