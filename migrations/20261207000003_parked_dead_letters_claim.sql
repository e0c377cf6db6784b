-- The dead-letter sender claims queued copies with SELECT ... FOR UPDATE SKIP LOCKED, which needs
-- the UPDATE privilege: without it every send failed with 42501 and no copy ever left the queue.
GRANT UPDATE ON parked_dead_letters TO eventfold_projector;
