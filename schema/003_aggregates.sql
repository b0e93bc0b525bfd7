-- Pre-aggregated attempts for the admin's dashboard and subject pages.
-- At ten million attempts a chart or a top table computed from the
-- attempts themselves takes seconds; these materialized views keep the
-- counts as rows arrive, and the read layer (pkg/record) reads them.
--
-- Each view counts stored rows, count(): a row stored twice (a
-- redelivered event, until ReplacingMergeTree merges the copies away in
-- attempts) is counted twice here, and merges of attempts do not undo it.
-- docs/DESIGN.md ("ClickHouse") says when that happens and how far it
-- skews the figures; listings and CountAttempts read attempts and stay
-- exact.
--
-- POPULATE counts the rows already stored when the view is created (18.16
-- cannot populate a view written TO a table of its own, and a backfill
-- INSERT would count twice when the migration runs twice). Rows inserted
-- while a view populates are not counted in it: run the migration before
-- the recorders write, as cmd/recorder does at start. Populating reads the
-- whole table once per view (about a minute at ten million rows on two
-- cores). IF NOT EXISTS keeps the file safe to run twice.
--
-- Every view is partitioned by day like attempts; record.Cleanup drops
-- the days that it drops from attempts.

-- Attempts per minute by result and mode: the dashboard's chart and totals.
CREATE MATERIALIZED VIEW IF NOT EXISTS defender.attempts_per_minute
ENGINE = SummingMergeTree
PARTITION BY toDate(minute)
ORDER BY (minute, result, observe)
POPULATE
AS SELECT toStartOfMinute(ts) AS minute, result, observe, count() AS n
FROM defender.attempts
GROUP BY minute, result, observe;

-- Attempts per subject (an address, by = 'ip', or a username, by =
-- 'username'), minute and result, sorted by subject: where in time one
-- subject's newest attempts lie, so that its history reads only that span
-- of attempts. ARRAY JOIN makes two rows of each attempt, one per subject.
CREATE MATERIALIZED VIEW IF NOT EXISTS defender.attempts_by_subject
ENGINE = SummingMergeTree
PARTITION BY toDate(minute)
ORDER BY (by, subject, minute, result)
POPULATE
AS SELECT by, subject, toStartOfMinute(ts) AS minute, result, count() AS n
FROM defender.attempts
ARRAY JOIN [ip, username] AS subject, ['ip', 'username'] AS by
GROUP BY by, subject, minute, result;

-- Failed and refused attempts per subject and hour, keyed by a 64-bit
-- hash of the subject (value): the dashboard's top tables sum these, and
-- grouping by a number is several times cheaper than by a string.
-- (topK states would be smaller, but 18.16 merges them badly: merged top
-- lists missed the heaviest sources.)
CREATE MATERIALIZED VIEW IF NOT EXISTS defender.attempts_top
ENGINE = SummingMergeTree
PARTITION BY toDate(hour)
ORDER BY (by, hour, h)
POPULATE
AS SELECT by, toStartOfHour(ts) AS hour, cityHash64(subject) AS h, any(subject) AS value,
    countIf(result = 'failure') AS failures, countIf(result = 'blocked') AS blocked
FROM defender.attempts
ARRAY JOIN [ip, username] AS subject, ['ip', 'username'] AS by
WHERE result != 'success' AND subject != ''
GROUP BY by, hour, h;
