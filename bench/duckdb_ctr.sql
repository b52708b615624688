-- Per-search CTR in SQL, the batch yardstick for `make bench`.
-- Sessions: per user by event time, a new one after a gap of more than 30 minutes,
-- at an app_open, or after an app_close. Each search owns the events up to the next
-- search in its session; CTR is 1.0 when one of them is a click.
-- (max_session, search_id, duplicates and invalid records are left out.)
-- Two parameters (Python str.format): path, the JSON Lines file, and time, the SQL
-- reading "time" (VARCHAR) as a TIMESTAMPTZ: bench.py's ISO_TIME, a plain cast, for
-- ISO text, or its EPOCH_TIME where the file also has epoch numbers (read by size as
-- the core does: s, ms, us, ns).
WITH events AS (
    SELECT
        CAST("user" AS VARCHAR) AS u,
        {time} AS t,
        "type" AS kind,
        query,
        row_number() OVER () AS rn
    FROM read_json('{path}', format = 'newline_delimited', ignore_errors = true,
                   columns = {{"type": 'VARCHAR', "user": 'VARCHAR', "time": 'VARCHAR',
                               "query": 'VARCHAR'}})
    WHERE "type" IS NOT NULL AND "user" IS NOT NULL AND "time" IS NOT NULL
),
marked AS (
    SELECT *,
        CASE WHEN lag(t) OVER w IS NULL
               OR t - lag(t) OVER w > INTERVAL 30 MINUTE
               OR kind = 'app_open'
               OR lag(kind) OVER w = 'app_close'
             THEN 1 ELSE 0 END AS new_session
    FROM events
    WINDOW w AS (PARTITION BY u ORDER BY t, rn)
),
sessions AS (
    SELECT *, sum(new_session) OVER (PARTITION BY u ORDER BY t, rn) AS session_no
    FROM marked
),
owned AS (
    SELECT *, sum(CASE WHEN kind = 'search' THEN 1 ELSE 0 END)
                  OVER (PARTITION BY u, session_no ORDER BY t, rn) AS search_no
    FROM sessions
),
per_search AS (
    SELECT u, session_no, search_no,
           max(CASE WHEN kind = 'click' THEN 1.0 ELSE 0.0 END) AS ctr
    FROM owned
    WHERE search_no > 0
    GROUP BY u, session_no, search_no
)
SELECT count(*) AS searches, avg(ctr) AS ctr FROM per_search
