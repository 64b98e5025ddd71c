-- The database's own bound on draining (docs/performance.md): one statement claims the 1000 oldest ready
-- events, joins each to its row and moves them to the archive with the row as JSON. Run in a loop,
-- one commit per statement, until it moves nothing. Keys are `id=<bigint>`.
WITH claimed AS (
    DELETE FROM trigpoll.trigpoll_event e
    WHERE e.event_id IN (
        SELECT event_id FROM trigpoll.trigpoll_event
        WHERE waiting_for IS NULL AND event_status = 0
        ORDER BY event_priority, event_id
        LIMIT 1000
        FOR UPDATE SKIP LOCKED)
    RETURNING e.*
)
INSERT INTO trigpoll.trigpoll_archive (event_id, object_name, object_verb, object_key,
    event_priority, event_time, event_status, connector_id, attempts, payload, replay_of)
SELECT c.event_id, c.object_name, c.object_verb, c.object_key, c.event_priority, c.event_time,
    1, 'bound', c.attempts + 1, to_json(t.*), c.replay_of
FROM claimed c
JOIN public.item t ON t.id = substr(c.object_key, 4)::bigint
