-- PlaceTrade's SQL as the ORM issues it (broker/services/placement.py, captured with
-- CaptureQueriesContext): one transaction that locks the account row, inserts the
-- trade, its 'accepted' event, moves the hold, appends the ledger entry, inserts the
-- outbox row and the 'outbox' event; then NOTIFY after commit (outbox_enqueue's
-- on_commit hook), in its own transaction, as the api does.
-- Variables: -D mincid=<first customer id> -D maxcid=<last customer id>.
-- The ORM sends values it computed in Python (uuid, timestamps, absolute balances);
-- here the database computes them: the same statements, rows and locks.
-- The outbox topic is one no relay serves; the runner stamps the rows afterwards.
\set cid random(:mincid, :maxcid)
BEGIN;
SELECT id AS aid, cash, reserved_cash FROM broker_account WHERE customer_id = :cid LIMIT 21 FOR UPDATE \gset
INSERT INTO broker_trade (id, account_id, symbol, side, type, time_in_force, quantity, limit_price, client_order_id, status, collar_price, hold_remaining, filled_quantity, average_price, exchange_order_id, reject_reason, review_reason, created_at, submitted_at, filled_at, canceled_at, expired_at, rejected_at, updated_at) VALUES (gen_random_uuid(), :aid, 'AAPL', 'buy', 'market', 'day', 1, NULL, NULL, 'accepted', 199.6260, 199.63, 0, NULL, '', '', '', now(), NULL, NULL, NULL, NULL, NULL, now()) RETURNING id AS tid \gset
INSERT INTO broker_tradeevent (trade_id, kind, status, epoch, detail, created_at) VALUES (:tid, 'status', 'accepted', NULL, '{"hold": "199.63", "last_price": "190.12"}'::jsonb, now()) RETURNING id;
UPDATE broker_account SET cash = :cash, reserved_cash = :reserved_cash + 199.63, updated_at = now() WHERE id = :aid;
INSERT INTO broker_ledgerentry (account_id, trade_id, execution_id, kind, bucket, asset, amount, memo, created_at) VALUES (:aid, :tid, NULL, 'hold', 'reserved_cash', 'USD', 199.63, '', now()) RETURNING id;
INSERT INTO broker_outboxevent (topic, key, event_type, payload, created_at, published_at) VALUES ('bench-pgbench', :cid, 'trade.placed', jsonb_build_object('trade_id', :tid::text, 'customer_id', :cid::bigint), now(), NULL) RETURNING id AS oid \gset
INSERT INTO broker_tradeevent (trade_id, kind, status, epoch, detail, created_at) VALUES (:tid, 'outbox', '', NULL, jsonb_build_object('outbox_id', :oid::bigint, 'event_type', 'trade.placed', 'topic', 'bench-pgbench'), now()) RETURNING id;
COMMIT;
NOTIFY outbox;
