-- The relay reads, deletes and (when an operator releases a parked row) re-inserts outbox rows; it
-- never updates one.
REVOKE UPDATE ON outbox FROM eventfold_relay;
