-- PgQ, where it can be installed: one queue, ticked every 1000 events like trigpoll's batches,
-- fed by its C trigger logutriga (which captures the whole row, URL-encoded).
CREATE EXTENSION IF NOT EXISTS pgq;
SELECT pgq.create_queue('bench');
SELECT pgq.set_queue_config('bench', 'ticker_max_count', '1000');
SELECT pgq.register_consumer('bench', 'bench');
CREATE TRIGGER pgq_capture AFTER INSERT OR UPDATE OR DELETE ON p_item
    FOR EACH ROW EXECUTE FUNCTION pgq.logutriga('bench');
CREATE TRIGGER pgq_capture AFTER INSERT OR UPDATE OR DELETE ON u_pgq
    FOR EACH ROW EXECUTE FUNCTION pgq.logutriga('bench');
CREATE TRIGGER pgq_capture AFTER INSERT OR UPDATE OR DELETE ON i_pgq
    FOR EACH ROW EXECUTE FUNCTION pgq.logutriga('bench');
