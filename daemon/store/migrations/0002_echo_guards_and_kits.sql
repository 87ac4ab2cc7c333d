-- storesync schema, version 2.
-- * Echo guards: what the channel already has is recorded next to the data, so an import never
--   queues a push of what it just read, and a push is never repeated.
-- * The warehouse an order's sale debits is kept on the order (the ERP may set its status later).
-- * Change capture for kits sold as kits, kit edits, and products switched on for sync.

ALTER TABLE orders ADD COLUMN sale_warehouse TEXT;        -- warehouse code the sale debits
ALTER TABLE shipments ADD COLUMN remote_tracking_code TEXT; -- the tracking code the channel already has
ALTER TABLE invoices ADD COLUMN pushed_at TEXT;           -- when the channel accepted it (NULL: not yet)

-- A kit sold as a kit reserves its components: re-queue the kit, its components and every kit that
-- shares a component (0001 only re-queued the item's product and the kits containing it).
DROP TRIGGER order_items_enqueue_stock;
CREATE TRIGGER order_items_enqueue_stock AFTER INSERT ON order_items
BEGIN
    INSERT INTO outbox (channel, entity, entity_id)
    SELECT c.name, 'stock', p.id FROM channels c,
        (SELECT NEW.product_id AS id
         UNION SELECT kit_id FROM kit_components WHERE component_id = NEW.product_id
         UNION SELECT component_id FROM kit_components WHERE kit_id = NEW.product_id
         UNION SELECT k2.kit_id FROM kit_components k1
               JOIN kit_components k2 ON k2.component_id = k1.component_id
               WHERE k1.kit_id = NEW.product_id) p
    WHERE c.enabled
    ON CONFLICT (channel, entity, entity_id) DO UPDATE SET
        state = 'pending', version = version + 1, attempts = 0, last_error = NULL,
        next_attempt_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'),
        changed_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now');
END;

DROP TRIGGER orders_enqueue_stock_on_release;
CREATE TRIGGER orders_enqueue_stock_on_release AFTER UPDATE OF stock_state ON orders
WHEN NEW.stock_state IS NOT OLD.stock_state
BEGIN
    INSERT INTO outbox (channel, entity, entity_id)
    SELECT c.name, 'stock', p.id FROM channels c,
        (SELECT oi.product_id AS id FROM order_items oi WHERE oi.order_id = NEW.id
         UNION SELECT kc.kit_id FROM kit_components kc
               JOIN order_items oi ON oi.product_id = kc.component_id WHERE oi.order_id = NEW.id
         UNION SELECT kc.component_id FROM kit_components kc
               JOIN order_items oi ON oi.product_id = kc.kit_id WHERE oi.order_id = NEW.id
         UNION SELECT k2.kit_id FROM kit_components k1
               JOIN order_items oi ON oi.product_id = k1.kit_id
               JOIN kit_components k2 ON k2.component_id = k1.component_id
               WHERE oi.order_id = NEW.id) p
    WHERE c.enabled
    ON CONFLICT (channel, entity, entity_id) DO UPDATE SET
        state = 'pending', version = version + 1, attempts = 0, last_error = NULL,
        next_attempt_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'),
        changed_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now');
END;

-- Removing a component or changing its quantity changes what the kit can promise.
CREATE TRIGGER kit_components_enqueue_delete AFTER DELETE ON kit_components
BEGIN
    INSERT INTO outbox (channel, entity, entity_id)
    SELECT c.name, 'stock', OLD.kit_id FROM channels c WHERE c.enabled
    ON CONFLICT (channel, entity, entity_id) DO UPDATE SET
        state = 'pending', version = version + 1, attempts = 0, last_error = NULL,
        next_attempt_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'),
        changed_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now');
END;

CREATE TRIGGER kit_components_enqueue_update AFTER UPDATE OF quantity ON kit_components
WHEN NEW.quantity IS NOT OLD.quantity
BEGIN
    INSERT INTO outbox (channel, entity, entity_id)
    SELECT c.name, 'stock', NEW.kit_id FROM channels c WHERE c.enabled
    ON CONFLICT (channel, entity, entity_id) DO UPDATE SET
        state = 'pending', version = version + 1, attempts = 0, last_error = NULL,
        next_attempt_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'),
        changed_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now');
END;

-- A product switched on for sync needs its stock and price on every channel, not only the product.
CREATE TRIGGER products_enqueue_enable AFTER UPDATE OF sync_enabled ON products
WHEN NEW.sync_enabled AND NOT OLD.sync_enabled
BEGIN
    INSERT INTO outbox (channel, entity, entity_id)
    SELECT c.name, e.entity, NEW.id FROM channels c,
        (SELECT 'stock' AS entity
         UNION ALL SELECT 'price' WHERE EXISTS (SELECT 1 FROM prices WHERE product_id = NEW.id)) e
    WHERE c.enabled
    ON CONFLICT (channel, entity, entity_id) DO UPDATE SET
        state = 'pending', version = version + 1, attempts = 0, last_error = NULL,
        next_attempt_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'),
        changed_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now');
END;

-- Echo guard: only a local status change is pushed. An import moves status and remote_status
-- together (the channel told us), which must not queue a push back to the same channel.
DROP TRIGGER orders_enqueue_update;
CREATE TRIGGER orders_enqueue_update AFTER UPDATE OF status ON orders
WHEN NEW.status IS NOT OLD.status AND NEW.remote_status IS OLD.remote_status
BEGIN
    INSERT INTO outbox (channel, entity, entity_id) VALUES (NEW.channel, 'order_update', NEW.id)
    ON CONFLICT (channel, entity, entity_id) DO UPDATE SET
        state = 'pending', version = version + 1, attempts = 0, last_error = NULL,
        next_attempt_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'),
        changed_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now');
END;

-- Tracking codes that came from the channel (remote_tracking_code) are not pushed back to it.
DROP TRIGGER shipments_enqueue_insert;
CREATE TRIGGER shipments_enqueue_insert AFTER INSERT ON shipments
WHEN NEW.tracking_code IS NOT NULL AND NEW.tracking_code IS NOT NEW.remote_tracking_code
BEGIN
    INSERT INTO outbox (channel, entity, entity_id)
    SELECT o.channel, 'order_update', o.id FROM orders o WHERE o.id = NEW.order_id
    ON CONFLICT (channel, entity, entity_id) DO UPDATE SET
        state = 'pending', version = version + 1, attempts = 0, last_error = NULL,
        next_attempt_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'),
        changed_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now');
END;

DROP TRIGGER shipments_enqueue_update;
CREATE TRIGGER shipments_enqueue_update AFTER UPDATE OF tracking_code ON shipments
WHEN NEW.tracking_code IS NOT NULL AND NEW.tracking_code IS NOT OLD.tracking_code
     AND NEW.tracking_code IS NOT NEW.remote_tracking_code
BEGIN
    INSERT INTO outbox (channel, entity, entity_id)
    SELECT o.channel, 'order_update', o.id FROM orders o WHERE o.id = NEW.order_id
    ON CONFLICT (channel, entity, entity_id) DO UPDATE SET
        state = 'pending', version = version + 1, attempts = 0, last_error = NULL,
        next_attempt_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'),
        changed_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now');
END;

-- Reservations are read for every stock push: open orders are few, all orders many.
CREATE INDEX orders_reserved ON orders(id) WHERE stock_state = 'reserved';
