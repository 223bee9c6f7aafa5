-- Events that actors emit, written in the same transaction as the state change that
-- emitted them, and published to NATS by the outbox relay.

create table outbox (
  id         bigint generated always as identity primary key,
  machine    text        not null,
  entity_id  text        not null,
  -- The subject as the machine gave it, before the configured prefix.
  subject    text        not null,
  type       text        not null,
  data       jsonb       not null,
  headers    jsonb       not null default '{}'::jsonb,
  created_at timestamptz not null default now(),
  sent_at    timestamptz,
  attempts   integer     not null default 0,
  last_error text
);
create index outbox_unsent on outbox (id) where sent_at is null;
