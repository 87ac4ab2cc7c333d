-- storesync schema, version 3: carrier tracking.
-- A carrier channel (kind correios) reads the latest event of every open shipment and keeps its
-- state in shipments.status (posted, in_transit, ..., delivered, returned; 'pending' until first read).

ALTER TABLE shipments ADD COLUMN tracking_checked_at TEXT; -- when the carrier was last asked
ALTER TABLE shipments ADD COLUMN tracking_event TEXT;      -- its latest event (JSON: code, description, at, place)
ALTER TABLE shipments ADD COLUMN delivered_at TEXT;        -- the carrier's time of delivery

-- The tracking flow's claim: open shipments with a code, least recently checked first.
CREATE INDEX shipments_tracking_due ON shipments (tracking_checked_at, id)
    WHERE tracking_code IS NOT NULL AND status NOT IN ('delivered', 'returned', 'invalid_code');
