-- name = "browse_abandonment"
-- description = "A member viewed the same item at least 3 times in the last hour and never put it in a cart"
-- version = "1"
-- every = "1m"
-- key = "customer_key"
-- topic = "notifications"
-- channel = "push"
-- template = "browse_abandonment_reminder"
-- priority = 40
-- cooldown = "24h"
WITH viewed AS (
  SELECT customer_key, item_id, count(*) AS views
  FROM clickstream
  WHERE type = 'view_item'
    AND timestamp > clock() - INTERVAL '1 hour'
    AND timestamp <= clock()
    AND customer_key NOT LIKE 'anon:%'
  GROUP BY customer_key, item_id
  HAVING count(*) >= 3
)
SELECT v.customer_key,
       v.item_id,
       v.views,
       'viewed ' || v.item_id || ' ' || CAST(v.views AS VARCHAR)
         || ' times in the last hour without adding it to a cart' AS reason
FROM viewed v
WHERE NOT EXISTS (
    SELECT 1 FROM clickstream a
    WHERE a.type = 'add_to_cart'
      AND a.customer_key = v.customer_key
      AND a.item_id = v.item_id
      AND a.timestamp > clock() - INTERVAL '1 hour'
      AND a.timestamp <= clock())
ORDER BY views DESC, v.item_id
