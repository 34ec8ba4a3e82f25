-- Castle settlement ledger, version 4: the journal's arrays are compressed with LZ4 instead
-- of PostgreSQL's built-in pglz.
--
-- Why: version 3 made each journal row a ~9 kB group of ledger lines that PostgreSQL
-- compresses inline. Measured with the backend's CPU time on 1.34 M lines (10.5 k group
-- rows, the lines of 200 k fills): pglz spent 5.0 s compressing them, LZ4 0.5 s, for a
-- table 1.3x larger (29 MB against 22 MB). pglz was the largest single cost of a flush.
-- Rows written before this migration keep pglz; PostgreSQL reads both.
--
-- LZ4 needs a server built --with-lz4 (Debian/Ubuntu packages, RDS and Aurora PostgreSQL
-- 14+ are). On a server without it the columns keep pglz: the ledger is the same, only
-- slower to write, so the migration notes it instead of failing.
DO $$
BEGIN
    ALTER TABLE ledger_journal
        ALTER COLUMN seq SET COMPRESSION lz4, ALTER COLUMN idx SET COMPRESSION lz4,
        ALTER COLUMN ts SET COMPRESSION lz4, ALTER COLUMN account SET COMPRESSION lz4,
        ALTER COLUMN asset SET COMPRESSION lz4, ALTER COLUMN kind SET COMPRESSION lz4,
        ALTER COLUMN reference SET COMPRESSION lz4, ALTER COLUMN available SET COMPRESSION lz4,
        ALTER COLUMN locked SET COMPRESSION lz4, ALTER COLUMN external SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE WARNING 'castle settlement: this server has no lz4 support; the ledger journal keeps pglz (slower writes)';
END
$$;
