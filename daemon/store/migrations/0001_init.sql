-- storesync ERP schema, version 1.
-- Times are ISO-8601 UTC text ("2026-11-26T10:00:00.000000+00:00") unless a column says otherwise.
-- Money is TEXT holding a decimal ("119.90") so nothing is lost to floating point.

CREATE TABLE channels (
    -- Mirrors the configured channels so triggers can fan a change out to each of them.
    name        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    enabled     INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE products (
    id           INTEGER PRIMARY KEY,
    sku          TEXT NOT NULL UNIQUE,
    ean          TEXT,
    code         TEXT,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    weight_kg    TEXT,
    active       INTEGER NOT NULL DEFAULT 1,
    is_kit       INTEGER NOT NULL DEFAULT 0,
    manage_stock INTEGER NOT NULL DEFAULT 1,
    sync_enabled INTEGER NOT NULL DEFAULT 1,   -- "push selected products": 0 keeps it off every channel
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    updated_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'))
);
CREATE INDEX products_ean ON products(ean) WHERE ean IS NOT NULL;
CREATE INDEX products_code ON products(code) WHERE code IS NOT NULL;

CREATE TABLE kit_components (
    kit_id       INTEGER NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    component_id INTEGER NOT NULL REFERENCES products(id) ON DELETE RESTRICT,
    quantity     INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (kit_id, component_id),
    CHECK (kit_id <> component_id)
);
CREATE INDEX kit_components_component ON kit_components(component_id);

CREATE TABLE warehouses (
    id    INTEGER PRIMARY KEY,
    code  TEXT NOT NULL UNIQUE,
    name  TEXT NOT NULL
);

CREATE TABLE stock_movements (
    id           INTEGER PRIMARY KEY,
    product_id   INTEGER NOT NULL REFERENCES products(id),
    warehouse_id INTEGER NOT NULL REFERENCES warehouses(id),
    delta        INTEGER NOT NULL,
    reason       TEXT NOT NULL DEFAULT 'adjust',  -- adjust | sale | return | transfer | count | import
    reference    TEXT,                            -- e.g. 'order:42', 'nfe:...', a user note
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'))
);
CREATE INDEX stock_movements_product ON stock_movements(product_id, id);

CREATE TABLE stock_levels (
    product_id   INTEGER NOT NULL REFERENCES products(id),
    warehouse_id INTEGER NOT NULL REFERENCES warehouses(id),
    on_hand      INTEGER NOT NULL DEFAULT 0,
    updated_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    PRIMARY KEY (product_id, warehouse_id)
);

CREATE TABLE prices (
    product_id   INTEGER PRIMARY KEY REFERENCES products(id) ON DELETE CASCADE,
    list_price   TEXT NOT NULL,
    sale_price   TEXT,              -- standing promotional price (no dates)
    cost_price   TEXT,
    promo_price  TEXT,              -- scheduled promotion, in force between promo_start and promo_end
    promo_start  TEXT,
    promo_end    TEXT,
    updated_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'))
);

CREATE TABLE customers (
    id          INTEGER PRIMARY KEY,
    document    TEXT UNIQUE,        -- CPF (11) or CNPJ (14) digits, validated before insert
    name        TEXT NOT NULL,
    email       TEXT,
    phone       TEXT,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'))
);

CREATE TABLE orders (
    id             INTEGER PRIMARY KEY,
    channel        TEXT NOT NULL,
    remote_id      TEXT NOT NULL,
    number         TEXT NOT NULL,         -- the channel's order reference shown to people
    status         TEXT NOT NULL,         -- local status (after de-para)
    remote_status  TEXT NOT NULL,         -- last status known to be on the channel (echo guard)
    paid           INTEGER NOT NULL DEFAULT 0,
    customer_id    INTEGER REFERENCES customers(id),
    carrier        TEXT,
    payment_method TEXT,
    total          TEXT NOT NULL,
    shipping_cost  TEXT NOT NULL DEFAULT '0',
    discount       TEXT NOT NULL DEFAULT '0',
    stock_state    TEXT NOT NULL DEFAULT 'reserved' CHECK (stock_state IN ('reserved', 'debited', 'released')),
    note           TEXT,
    shipping_address TEXT,                -- JSON
    raw            TEXT,                  -- the channel's payload, JSON
    remote_created_at TEXT,
    remote_updated_at TEXT,
    imported_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    updated_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    UNIQUE (channel, remote_id)
);
CREATE INDEX orders_status ON orders(status);

CREATE TABLE order_items (
    id          INTEGER PRIMARY KEY,
    order_id    INTEGER NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    product_id  INTEGER NOT NULL REFERENCES products(id),
    sku         TEXT NOT NULL,
    name        TEXT NOT NULL DEFAULT '',
    quantity    INTEGER NOT NULL CHECK (quantity > 0),
    unit_price  TEXT NOT NULL
);
CREATE INDEX order_items_order ON order_items(order_id);
CREATE INDEX order_items_product ON order_items(product_id);

CREATE TABLE invoices (
    id          INTEGER PRIMARY KEY,
    order_id    INTEGER NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    number      TEXT NOT NULL,
    series      TEXT NOT NULL,
    access_key  TEXT NOT NULL UNIQUE CHECK (length(access_key) = 44),
    issued_at   TEXT NOT NULL,
    danfe_url   TEXT,
    xml_url     TEXT,
    xml         TEXT,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'))
);
CREATE INDEX invoices_order ON invoices(order_id);

CREATE TABLE shipments (
    id            INTEGER PRIMARY KEY,
    order_id      INTEGER NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    remote_id     TEXT,             -- the channel's shipment id when it has one (LI: pedido_envio id)
    carrier       TEXT,
    tracking_code TEXT,
    tracking_url  TEXT,
    status        TEXT NOT NULL DEFAULT 'pending',
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'))
);
CREATE INDEX shipments_order ON shipments(order_id);

CREATE TABLE tickets (
    id          INTEGER PRIMARY KEY,
    channel     TEXT NOT NULL,
    remote_id   TEXT NOT NULL,
    order_id    INTEGER REFERENCES orders(id),
    subject     TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL DEFAULT 'open',
    body        TEXT,
    raw         TEXT,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    UNIQUE (channel, remote_id)
);

CREATE TABLE bindings (
    -- The link (vínculo) between an ERP record and the channel's record.
    channel     TEXT NOT NULL,
    entity      TEXT NOT NULL,          -- product | order | customer
    local_id    INTEGER NOT NULL,
    remote_id   TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    PRIMARY KEY (channel, entity, local_id),
    UNIQUE (channel, entity, remote_id)
);

CREATE TABLE mappings (
    -- de-para tables: status, carrier, payment, category.
    channel     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    local       TEXT NOT NULL,
    remote      TEXT NOT NULL,
    PRIMARY KEY (channel, kind, remote)
);
CREATE INDEX mappings_local ON mappings(channel, kind, local);

CREATE TABLE outbox (
    -- One row per (channel, entity, entity_id); a newer change coalesces into it (version + 1).
    id              INTEGER PRIMARY KEY,
    channel         TEXT NOT NULL,
    entity          TEXT NOT NULL CHECK (entity IN ('product', 'stock', 'price', 'order_update')),
    entity_id       INTEGER NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed', 'parked')),
    version         INTEGER NOT NULL DEFAULT 1,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    last_error      TEXT,
    changed_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    sent_at         TEXT,
    UNIQUE (channel, entity, entity_id)
);
CREATE INDEX outbox_due ON outbox(channel, entity, state, next_attempt_at);

CREATE TABLE pushed_values (
    -- What was last pushed for an entity and how it was computed ("why does the channel show 3?").
    channel     TEXT NOT NULL,
    entity      TEXT NOT NULL,
    entity_id   INTEGER NOT NULL,
    value       TEXT NOT NULL,       -- JSON: the value sent
    explanation TEXT NOT NULL,       -- JSON: the inputs and steps that produced it
    pushed_at   TEXT NOT NULL,
    PRIMARY KEY (channel, entity, entity_id)
);

CREATE TABLE import_failures (
    -- Remote records that could not be imported: parked, visible, retried on the next pass.
    id          INTEGER PRIMARY KEY,
    channel     TEXT NOT NULL,
    entity      TEXT NOT NULL DEFAULT 'order',
    remote_id   TEXT NOT NULL,
    error       TEXT NOT NULL,
    raw         TEXT,
    attempts    INTEGER NOT NULL DEFAULT 1,
    state       TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'resolved', 'dismissed')),
    first_seen_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    last_seen_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    UNIQUE (channel, entity, remote_id)
);

CREATE TABLE sync_state (
    -- Pull cursors: the committed watermark and, mid-window, the next page token.
    channel     TEXT NOT NULL,
    flow        TEXT NOT NULL,
    watermark   TEXT,                -- highest remote updated_at fully imported
    window_since TEXT,               -- the 'since' of the window being paged (NULL when idle)
    page_token  TEXT,                -- next page of that window
    window_max  TEXT,                -- highest updated_at seen so far in the window
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    PRIMARY KEY (channel, flow)
);

CREATE TABLE channel_tokens (
    -- Tokens the daemon must keep (rotated refresh tokens). Nothing else stores secrets.
    channel     TEXT PRIMARY KEY,
    access_token  TEXT,
    refresh_token TEXT,
    expires_at  TEXT,
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'))
);

-- ---------------------------------------------------------------------------------------------
-- Change capture: any writer (this daemon, the CLI, or plain SQL from the ERP) queues outbox rows.
-- ---------------------------------------------------------------------------------------------

CREATE TRIGGER stock_movements_apply AFTER INSERT ON stock_movements
BEGIN
    INSERT INTO stock_levels (product_id, warehouse_id, on_hand, updated_at)
    VALUES (NEW.product_id, NEW.warehouse_id, NEW.delta, NEW.created_at)
    ON CONFLICT (product_id, warehouse_id)
    DO UPDATE SET on_hand = on_hand + excluded.on_hand, updated_at = excluded.updated_at;
END;

-- A product's stock changed: queue it and every kit that contains it, for every channel.
CREATE TRIGGER stock_levels_enqueue_insert AFTER INSERT ON stock_levels
BEGIN
    INSERT INTO outbox (channel, entity, entity_id)
    SELECT c.name, 'stock', p.id FROM channels c,
        (SELECT NEW.product_id AS id UNION SELECT kit_id FROM kit_components WHERE component_id = NEW.product_id) p
    WHERE c.enabled
    ON CONFLICT (channel, entity, entity_id) DO UPDATE SET
        state = 'pending', version = version + 1, attempts = 0, last_error = NULL,
        next_attempt_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'),
        changed_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now');
END;

CREATE TRIGGER stock_levels_enqueue_update AFTER UPDATE OF on_hand ON stock_levels
WHEN NEW.on_hand IS NOT OLD.on_hand
BEGIN
    INSERT INTO outbox (channel, entity, entity_id)
    SELECT c.name, 'stock', p.id FROM channels c,
        (SELECT NEW.product_id AS id UNION SELECT kit_id FROM kit_components WHERE component_id = NEW.product_id) p
    WHERE c.enabled
    ON CONFLICT (channel, entity, entity_id) DO UPDATE SET
        state = 'pending', version = version + 1, attempts = 0, last_error = NULL,
        next_attempt_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'),
        changed_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now');
END;

-- Reservations change available-to-promise stock: an imported order (or its release) re-queues the
-- stock of its products on every channel, so one channel's sale lowers the others within a second.
CREATE TRIGGER order_items_enqueue_stock AFTER INSERT ON order_items
BEGIN
    INSERT INTO outbox (channel, entity, entity_id)
    SELECT c.name, 'stock', p.id FROM channels c,
        (SELECT NEW.product_id AS id UNION SELECT kit_id FROM kit_components WHERE component_id = NEW.product_id) p
    WHERE c.enabled
    ON CONFLICT (channel, entity, entity_id) DO UPDATE SET
        state = 'pending', version = version + 1, attempts = 0, last_error = NULL,
        next_attempt_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'),
        changed_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now');
END;

CREATE TRIGGER orders_enqueue_stock_on_release AFTER UPDATE OF stock_state ON orders
WHEN NEW.stock_state IS NOT OLD.stock_state
BEGIN
    INSERT INTO outbox (channel, entity, entity_id)
    SELECT c.name, 'stock', p.id FROM channels c,
        (SELECT oi.product_id AS id FROM order_items oi WHERE oi.order_id = NEW.id
         UNION SELECT kc.kit_id FROM kit_components kc
               JOIN order_items oi ON oi.product_id = kc.component_id WHERE oi.order_id = NEW.id) p
    WHERE c.enabled
    ON CONFLICT (channel, entity, entity_id) DO UPDATE SET
        state = 'pending', version = version + 1, attempts = 0, last_error = NULL,
        next_attempt_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'),
        changed_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now');
END;

CREATE TRIGGER kit_components_enqueue AFTER INSERT ON kit_components
BEGIN
    INSERT INTO outbox (channel, entity, entity_id)
    SELECT c.name, 'stock', NEW.kit_id FROM channels c WHERE c.enabled
    ON CONFLICT (channel, entity, entity_id) DO UPDATE SET
        state = 'pending', version = version + 1, attempts = 0, last_error = NULL,
        next_attempt_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'),
        changed_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now');
END;

CREATE TRIGGER prices_enqueue_insert AFTER INSERT ON prices
BEGIN
    INSERT INTO outbox (channel, entity, entity_id)
    SELECT c.name, 'price', NEW.product_id FROM channels c WHERE c.enabled
    ON CONFLICT (channel, entity, entity_id) DO UPDATE SET
        state = 'pending', version = version + 1, attempts = 0, last_error = NULL,
        next_attempt_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'),
        changed_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now');
END;

CREATE TRIGGER prices_enqueue_update AFTER UPDATE ON prices
BEGIN
    INSERT INTO outbox (channel, entity, entity_id)
    SELECT c.name, 'price', NEW.product_id FROM channels c WHERE c.enabled
    ON CONFLICT (channel, entity, entity_id) DO UPDATE SET
        state = 'pending', version = version + 1, attempts = 0, last_error = NULL,
        next_attempt_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'),
        changed_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now');
END;

CREATE TRIGGER products_enqueue_insert AFTER INSERT ON products
WHEN NEW.sync_enabled
BEGIN
    INSERT INTO outbox (channel, entity, entity_id)
    SELECT c.name, 'product', NEW.id FROM channels c WHERE c.enabled
    ON CONFLICT (channel, entity, entity_id) DO UPDATE SET
        state = 'pending', version = version + 1, attempts = 0, last_error = NULL,
        next_attempt_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'),
        changed_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now');
END;

CREATE TRIGGER products_enqueue_update AFTER UPDATE OF sku, ean, code, name, description, weight_kg, active, manage_stock, sync_enabled ON products
WHEN NEW.sync_enabled
BEGIN
    INSERT INTO outbox (channel, entity, entity_id)
    SELECT c.name, 'product', NEW.id FROM channels c WHERE c.enabled
    ON CONFLICT (channel, entity, entity_id) DO UPDATE SET
        state = 'pending', version = version + 1, attempts = 0, last_error = NULL,
        next_attempt_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'),
        changed_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now');
END;

-- Order updates: a local status change, a new invoice, a tracking code. The flow compares what the
-- channel already has (orders.remote_status, pushed_values) so an import never echoes back.
CREATE TRIGGER orders_enqueue_update AFTER UPDATE OF status ON orders
WHEN NEW.status IS NOT OLD.status
BEGIN
    INSERT INTO outbox (channel, entity, entity_id) VALUES (NEW.channel, 'order_update', NEW.id)
    ON CONFLICT (channel, entity, entity_id) DO UPDATE SET
        state = 'pending', version = version + 1, attempts = 0, last_error = NULL,
        next_attempt_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'),
        changed_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now');
END;

CREATE TRIGGER invoices_enqueue AFTER INSERT ON invoices
BEGIN
    INSERT INTO outbox (channel, entity, entity_id)
    SELECT o.channel, 'order_update', o.id FROM orders o WHERE o.id = NEW.order_id
    ON CONFLICT (channel, entity, entity_id) DO UPDATE SET
        state = 'pending', version = version + 1, attempts = 0, last_error = NULL,
        next_attempt_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'),
        changed_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now');
END;

CREATE TRIGGER shipments_enqueue_insert AFTER INSERT ON shipments
WHEN NEW.tracking_code IS NOT NULL
BEGIN
    INSERT INTO outbox (channel, entity, entity_id)
    SELECT o.channel, 'order_update', o.id FROM orders o WHERE o.id = NEW.order_id
    ON CONFLICT (channel, entity, entity_id) DO UPDATE SET
        state = 'pending', version = version + 1, attempts = 0, last_error = NULL,
        next_attempt_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'),
        changed_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now');
END;

CREATE TRIGGER shipments_enqueue_update AFTER UPDATE OF tracking_code ON shipments
WHEN NEW.tracking_code IS NOT NULL AND NEW.tracking_code IS NOT OLD.tracking_code
BEGIN
    INSERT INTO outbox (channel, entity, entity_id)
    SELECT o.channel, 'order_update', o.id FROM orders o WHERE o.id = NEW.order_id
    ON CONFLICT (channel, entity, entity_id) DO UPDATE SET
        state = 'pending', version = version + 1, attempts = 0, last_error = NULL,
        next_attempt_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'),
        changed_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now');
END;
