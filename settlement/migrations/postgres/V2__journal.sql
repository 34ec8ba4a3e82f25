-- Castle settlement ledger, version 2: the ledger lines of one engine command are stored as
-- one journal row (parallel arrays, line i of the command is element i of every array)
-- instead of one row per line. Same double-entry model and the same relation for readers:
-- the view `ledger_entries` unnests the journal into exactly the rows and columns of
-- version 1. Why: a command produced about 6.7 entry rows per fill, each with two index
-- tuples; one row per command with one append-only primary key is about 5x fewer heap rows
-- and 10x fewer index insertions, which is what bounded settlement throughput.

CREATE TABLE ledger_journal (
    seq       BIGINT     PRIMARY KEY,
    ts        BIGINT     NOT NULL,
    account   BIGINT[]   NOT NULL,
    asset     BIGINT[]   NOT NULL,
    kind      SMALLINT[] NOT NULL,
    reference BIGINT[]   NOT NULL,
    available BIGINT[]   NOT NULL,
    locked    BIGINT[]   NOT NULL,
    external  BIGINT[]   NOT NULL
    -- No CHECK on the array lengths: evaluating one costs as much as the row insert (it
    -- decompresses the arrays); the writer builds them from whole lines, and reconciliation
    -- verifies that every row's arrays have one length.
)
-- Rows up to a page stay inline and uncompressed (a 4-fill command is about 2 kB): no
-- compression attempt on the write path, no detoasting on read.
WITH (toast_tuple_target = 8160);

-- Keep every version 1 entry: one journal row per seq, lines in idx order.
INSERT INTO ledger_journal (seq, ts, account, asset, kind, reference, available, locked, external)
SELECT seq, min(ts), array_agg(account ORDER BY idx), array_agg(asset ORDER BY idx), array_agg(kind ORDER BY idx),
       array_agg(reference ORDER BY idx), array_agg(available ORDER BY idx), array_agg(locked ORDER BY idx),
       array_agg(external ORDER BY idx)
FROM ledger_entries GROUP BY seq;

DROP TABLE ledger_entries;

-- The version 1 relation, for reconciliation, finance and audit queries: one row per line.
CREATE VIEW ledger_entries AS
SELECT j.seq, (l.n - 1)::INTEGER AS idx, j.ts, l.account, l.asset, l.kind, l.reference, l.available, l.locked,
       l.external
FROM ledger_journal j,
     unnest(j.account, j.asset, j.kind, j.reference, j.available, j.locked, j.external)
         WITH ORDINALITY AS l(account, asset, kind, reference, available, locked, external, n);
