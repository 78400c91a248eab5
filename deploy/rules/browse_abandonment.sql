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
SELECT v.customer_key,
       v.item_id,
       count(*) AS views,
       'viewed ' || v.item_id || ' ' || CAST(count(*) AS VARCHAR)
         || ' times in the last hour without adding it to a cart' AS reason
FROM clickstream v
WHERE v.type = 'view_item'
  AND v.timestamp > clock() - INTERVAL '1 hour'
  AND v.timestamp <= clock()
  AND v.customer_key NOT LIKE 'anon:%'
  AND NOT EXISTS (
    SELECT 1 FROM clickstream a
    WHERE a.type = 'add_to_cart'
      AND a.customer_key = v.customer_key
      AND a.item_id = v.item_id
      AND a.timestamp > clock() - INTERVAL '1 hour'
      AND a.timestamp <= clock())
GROUP BY v.customer_key, v.item_id
HAVING count(*) >= 3
ORDER BY views DESC, v.item_id
