-- name = "lapsed_high_value"
-- description = "A customer with at least 3 purchases worth 1000 or more in the retained history has not bought for 30 days (RFM: recency, frequency, monetary). Needs transactions retained for longer than 30 days: [sql.retention.transactions] age_secs."
-- version = "1"
-- every = "1d"
-- key = "customer_key"
-- topic = "notifications"
-- channel = "email"
-- template = "we_miss_you"
-- priority = 30
-- cooldown = "30d"
WITH rfm AS (
  SELECT customer_key,
         max(timestamp) AS last_purchase,
         count(*) AS frequency,
         sum(value) AS monetary
  FROM transactions
  WHERE type = 'purchase' AND timestamp <= clock() AND customer_key NOT LIKE 'anon:%'
  GROUP BY customer_key
)
SELECT customer_key,
       frequency,
       monetary,
       (CAST(to_unixtime(clock()) AS BIGINT) - CAST(to_unixtime(last_purchase) AS BIGINT)) / 86400 AS recency_days,
       CAST(frequency AS VARCHAR) || ' purchases worth ' || CAST(monetary AS VARCHAR)
         || ', none for ' || CAST((CAST(to_unixtime(clock()) AS BIGINT) - CAST(to_unixtime(last_purchase) AS BIGINT)) / 86400 AS VARCHAR) || ' days' AS reason
FROM rfm
WHERE frequency >= 3
  AND monetary >= 1000
  AND last_purchase <= clock() - INTERVAL '30 days'
ORDER BY customer_key
