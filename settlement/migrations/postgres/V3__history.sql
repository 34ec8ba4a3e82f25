-- Castle settlement ledger, version 3: cheaper history indexes and the order fields the
-- REST gateway needs once an order has left its memory.
--
-- Why: settlement throughput was bound by index maintenance (every index tuple is a WAL
-- record; the table rows themselves go in as multi-row COPY records). Per stored order
-- there were four btree insertions and per fill four; now three and three:
--   * orders: the primary key becomes (account, order_id), which also serves the history
--     query by account (the separate orders_account index is dropped), and changed orders
--     are updated through it (the writer knows each order's account);
--   * orders and fills: the (instrument, time) btrees become BRIN indexes on time. Rows
--     arrive in time order, so a BRIN range is tight, and a BRIN insert into the newest,
--     not yet summarised range costs nothing (autovacuum summarises it later); queries by
--     instrument and time read the matching ranges and filter on instrument.
-- The added lookup by (account, client_order_id) is partial (orders without a client id
-- have no entry) and compares bytes.

ALTER TABLE orders
    ADD COLUMN expire_ts   BIGINT   NOT NULL DEFAULT 0,
    ADD COLUMN post_only   BOOLEAN,
    ADD COLUMN display_qty BIGINT,
    ADD COLUMN stp         SMALLINT,
    ADD COLUMN notional    BIGINT   NOT NULL DEFAULT 0 CHECK (notional >= 0);

-- expire_ts and the three NULLable fields were never stored before: GTD expiry and the
-- rest stay unknown (0 / NULL) for orders written by versions 1 and 2. The notional is
-- derived from the fills already stored.
UPDATE orders o SET notional = LEAST(s.total, 9223372036854775807)::BIGINT
FROM (
    SELECT order_id, SUM(price::NUMERIC * qty) AS total FROM (
        SELECT maker_order AS order_id, price, qty FROM fills
        UNION ALL
        SELECT taker_order, price, qty FROM fills
    ) f GROUP BY order_id
) s
WHERE o.order_id = s.order_id;

ALTER TABLE orders DROP CONSTRAINT orders_pkey;
ALTER TABLE orders ADD CONSTRAINT orders_pkey PRIMARY KEY (account, order_id);
DROP INDEX orders_account;
DROP INDEX orders_instrument_ts;
CREATE INDEX orders_created_ts ON orders USING brin (created_ts);
-- COLLATE "C": byte comparisons (the lookup is by equality, so no locale is needed), much
-- cheaper to maintain than the database's collation.
CREATE INDEX orders_client_order_id ON orders (account, client_order_id COLLATE "C") WHERE client_order_id <> '';

DROP INDEX fills_instrument_ts;
CREATE INDEX fills_ts ON fills USING brin (ts);

-- The journal: one row per group of consecutive commands of a flush (about 128 ledger
-- lines) instead of one per command. Why: per command, the row header, seven array headers
-- and a primary key entry cost more than the lines themselves (613 bytes per fill in the
-- benchmark); a group row is large enough (~9 kB) for PostgreSQL to compress it inline
-- (STORAGE MAIN + toast_tuple_target 128: compressed, never moved out of line unless it
-- is still above a page), which brings the journal to about 120 bytes per fill and its
-- insert time down about ten-fold. Line i of the row is element i of every array; a
-- command's lines are never split across rows, so (seq, idx) stays unique.
ALTER TABLE ledger_journal RENAME TO ledger_journal_v2;
DROP VIEW ledger_entries;

CREATE TABLE ledger_journal (
    first_seq BIGINT     PRIMARY KEY,
    last_seq  BIGINT     NOT NULL CHECK (last_seq >= first_seq),
    seq       BIGINT[]   NOT NULL,
    idx       INTEGER[]  NOT NULL,
    ts        BIGINT[]   NOT NULL,
    account   BIGINT[]   NOT NULL,
    asset     BIGINT[]   NOT NULL,
    kind      SMALLINT[] NOT NULL,
    reference BIGINT[]   NOT NULL,
    available BIGINT[]   NOT NULL,
    locked    BIGINT[]   NOT NULL,
    external  BIGINT[]   NOT NULL
    -- As in version 2, no CHECK on the array lengths (it would decompress every row on
    -- insert); reconciliation refuses rows whose arrays differ in length.
) WITH (toast_tuple_target = 128);
ALTER TABLE ledger_journal
    ALTER COLUMN seq SET STORAGE MAIN, ALTER COLUMN idx SET STORAGE MAIN, ALTER COLUMN ts SET STORAGE MAIN,
    ALTER COLUMN account SET STORAGE MAIN, ALTER COLUMN asset SET STORAGE MAIN, ALTER COLUMN kind SET STORAGE MAIN,
    ALTER COLUMN reference SET STORAGE MAIN, ALTER COLUMN available SET STORAGE MAIN,
    ALTER COLUMN locked SET STORAGE MAIN, ALTER COLUMN external SET STORAGE MAIN;

-- Every version 2 row (one command) becomes one group row.
INSERT INTO ledger_journal
SELECT j.seq, j.seq, array_fill(j.seq, ARRAY[n]), ARRAY(SELECT generate_series(0, n - 1)), array_fill(j.ts, ARRAY[n]),
       j.account, j.asset, j.kind, j.reference, j.available, j.locked, j.external
FROM ledger_journal_v2 j, LATERAL (SELECT cardinality(j.account) AS n) c;
DROP TABLE ledger_journal_v2;

-- The version 1 relation, unchanged for readers: one row per line.
CREATE VIEW ledger_entries AS
SELECT l.seq, l.idx, l.ts, l.account, l.asset, l.kind, l.reference, l.available, l.locked, l.external
FROM ledger_journal j,
     unnest(j.seq, j.idx, j.ts, j.account, j.asset, j.kind, j.reference, j.available, j.locked, j.external)
         AS l(seq, idx, ts, account, asset, kind, reference, available, locked, external);
