-- storesync schema, version 4: stock a channel holds back itself (setting channel_holds_stock_in).
-- Such a channel is sent its available-to-promise plus its own orders' reservations while they are
-- in a status it holds stock for, so an order moving into or out of such a status (a pull, or a
-- status the daemon pushed) changes what that channel must be sent: queue those products for it.

ALTER TABLE channels ADD COLUMN holds_stock_in TEXT; -- JSON list of remote status codes, NULL: none

CREATE TRIGGER orders_enqueue_own_stock_on_hold_change AFTER UPDATE OF remote_status ON orders
WHEN NEW.remote_status IS NOT OLD.remote_status AND NEW.stock_state = 'reserved'
BEGIN
    INSERT INTO outbox (channel, entity, entity_id)
    SELECT DISTINCT c.name, 'stock', oi.product_id FROM channels c
    JOIN order_items oi ON oi.order_id = NEW.id
    WHERE c.name = NEW.channel AND c.enabled AND c.holds_stock_in IS NOT NULL
      AND EXISTS (SELECT 1 FROM json_each(c.holds_stock_in) WHERE value = NEW.remote_status)
       <> EXISTS (SELECT 1 FROM json_each(c.holds_stock_in) WHERE value = OLD.remote_status)
    ON CONFLICT (channel, entity, entity_id) DO UPDATE SET
        state = 'pending', version = version + 1, attempts = 0, last_error = NULL,
        next_attempt_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'),
        changed_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now');
END;
