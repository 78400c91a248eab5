-- name = "store_footfall_anomaly"
-- description = "A store's clickstream events in a 15-minute window fell under 30 % or rose over 300 % of its average over the previous 8 windows (with at least 4 of them)"
-- version = "1"
-- every = "on_window_close"
-- key = "store_id"
-- topic = "alerts"
-- channel = "ops"
-- template = "store_footfall_anomaly"
-- priority = 10
-- cooldown = "1h"
WITH w AS (
  SELECT store_id, window_start, window_end, count(*) AS events
  FROM tumble(clickstream, "timestamp", INTERVAL '15 minutes')
  WHERE store_id IS NOT NULL
    AND timestamp > clock() - INTERVAL '24 hours'
    AND timestamp <= clock()
  GROUP BY store_id, window_start, window_end
),
s AS (
  SELECT store_id, window_end, events,
         avg(events) OVER (PARTITION BY store_id ORDER BY window_start
                           ROWS BETWEEN 8 PRECEDING AND 1 PRECEDING) AS usual,
         count(*) OVER (PARTITION BY store_id ORDER BY window_start
                        ROWS BETWEEN 8 PRECEDING AND 1 PRECEDING) AS windows
  FROM w
)
SELECT CAST(store_id AS VARCHAR) AS store_id,
       window_end,
       events,
       round(usual, 1) AS usual,
       'store ' || CAST(store_id AS VARCHAR) || ' had ' || CAST(events AS VARCHAR)
         || ' events in 15 minutes against a usual ' || CAST(round(usual, 1) AS VARCHAR) AS reason
FROM s
WHERE windows >= 4 AND (events < 0.3 * usual OR events > 3 * usual)
ORDER BY store_id, window_end
