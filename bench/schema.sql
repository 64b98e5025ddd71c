-- Tables of the benchmark, created in its throwaway database before `trigpoll install-triggers`.

-- Drained by trigpoll, the naive poller and the bound; keys are id=<bigint>.
CREATE TABLE item (
    id      bigint PRIMARY KEY,
    name    text NOT NULL,
    qty     integer NOT NULL,
    price   numeric(12,2),
    updated timestamptz NOT NULL DEFAULT now()
);

-- Trigger cost: the same table three times, without a trigger, with trigpoll's, with PgQ's.
CREATE TABLE u_none     (id integer PRIMARY KEY, name text NOT NULL, qty integer NOT NULL, updated timestamptz NOT NULL DEFAULT now());
CREATE TABLE u_trigpoll (LIKE u_none INCLUDING ALL);
CREATE TABLE u_pgq      (LIKE u_none INCLUDING ALL);
CREATE TABLE i_none     (LIKE u_none INCLUDING ALL);
CREATE TABLE i_trigpoll (LIKE u_none INCLUDING ALL);
CREATE TABLE i_pgq      (LIKE u_none INCLUDING ALL);

-- Latency: each row carries the time (µs since the epoch) it was written, just before its commit.
CREATE TABLE tick (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sent_us bigint NOT NULL
);

-- PgQ's drain: logutriga on this table feeds the queue its consumer reads.
CREATE TABLE p_item (LIKE item INCLUDING ALL);
