-- name = "vip_spend_spike"
-- description = "A gold or platinum member spent at least 500 in the last hour, over 3 times their hourly average of the 23 hours before"
-- version = "1"
-- every = "5m"
-- key = "customer_key"
-- topic = "notifications"
-- channel = "email"
-- template = "vip_thank_you"
-- priority = 60
-- cooldown = "7d"
WITH spend AS (
  SELECT customer_key,
         sum(CASE WHEN timestamp > clock() - INTERVAL '1 hour' THEN value ELSE 0 END) AS last_hour,
         sum(CASE WHEN timestamp <= clock() - INTERVAL '1 hour' THEN value ELSE 0 END) / 23 AS hourly_before
  FROM transactions
  WHERE type = 'purchase'
    AND timestamp > clock() - INTERVAL '24 hours'
    AND timestamp <= clock()
  GROUP BY customer_key
),
vip AS (
  SELECT DISTINCT customer_key FROM profiles
  WHERE tier IN ('gold', 'platinum') AND timestamp <= clock()
)
SELECT s.customer_key,
       s.last_hour,
       'VIP spent ' || CAST(s.last_hour AS VARCHAR) || ' in the last hour, over 3 times their hourly average' AS reason
FROM spend s JOIN vip ON s.customer_key = vip.customer_key
WHERE s.last_hour >= 500 AND s.last_hour > 3 * s.hourly_before
ORDER BY s.customer_key
