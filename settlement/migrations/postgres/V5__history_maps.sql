-- Castle settlement ledger, version 5: account history through small per-(account, flush)
-- map rows instead of account-leading btrees on every fill and order.
--
-- Why: every randomly placed btree tuple costs about 2 us of backend CPU, and the two
-- (maker/taker account, trade_id) btrees were half of the fills' insert cost (plain SQL on the
-- benchmark's rows, backend CPU: fills with them 9.6 us/fill, without them 4.4; the map rows
-- below add nothing measurable, since one row per account and flush lists hundreds of ids).
-- Rows of fills and orders arrive in id order, so their id-only primary keys take
-- PostgreSQL's rightmost-leaf fast path.
--
--   * account_fills: one row per account that traded in a flush, listing the trade ids of
--     that flush where the account was maker or taker (a self-trade is listed once);
--   * account_orders: one row per account per flush that accepted orders for it, listing
--     each order once, in the flush that first writes it (later changes update the order row
--     only);
--   * history reads walk an account's map rows newest first and fetch the rows by primary
--     key. An account's rows cover disjoint, increasing id ranges (ids increase with the
--     engine sequence and a flush is a sequence range), so the newest map rows hold the
--     newest ids.
--
-- The arrays of a busy flush are a few kB: rows up to a page stay inline and uncompressed
-- (no compression attempt on the write path), larger ones are compressed with LZ4 where the
-- server has it.

CREATE TABLE account_fills (
    account        BIGINT   NOT NULL,
    first_trade_id BIGINT   NOT NULL,
    trade_ids      BIGINT[] NOT NULL,
    PRIMARY KEY (account, first_trade_id)
) WITH (toast_tuple_target = 8160);

CREATE TABLE account_orders (
    account        BIGINT   NOT NULL,
    first_order_id BIGINT   NOT NULL,
    order_ids      BIGINT[] NOT NULL,
    PRIMARY KEY (account, first_order_id)
) WITH (toast_tuple_target = 8160);

DO $$
BEGIN
    ALTER TABLE account_fills ALTER COLUMN trade_ids SET COMPRESSION lz4;
    ALTER TABLE account_orders ALTER COLUMN order_ids SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE WARNING 'castle settlement: this server has no lz4 support; the history maps keep pglz';
END
$$;

-- Backfill: any grouping with disjoint id ranges per account works; chunks of 1024 ids keep
-- each row inline.
INSERT INTO account_fills (account, first_trade_id, trade_ids)
SELECT account, min(trade_id), array_agg(trade_id ORDER BY trade_id)
FROM (SELECT maker_account AS account, trade_id FROM fills
      UNION
      SELECT taker_account, trade_id FROM fills) s
GROUP BY account, trade_id / 1024;

INSERT INTO account_orders (account, first_order_id, order_ids)
SELECT account, min(order_id), array_agg(order_id ORDER BY order_id)
FROM orders
GROUP BY account, order_id / 1024;

DROP INDEX fills_maker_account;
DROP INDEX fills_taker_account;

-- The orders primary key becomes the order id alone (single-order lookups check the account
-- on the row; account history goes through account_orders).
ALTER TABLE orders DROP CONSTRAINT orders_pkey;
ALTER TABLE orders ADD CONSTRAINT orders_pkey PRIMARY KEY (order_id);
