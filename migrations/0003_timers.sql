-- Durable timers: delayed events a machine scheduled (`after`, `raise` with a delay).
-- A timer row lives until it fires (its event appended, in the same transaction that
-- deletes it) or until the state that set it is left (XState's cancel).

create table timers (
  id         bigint generated always as identity primary key,
  machine    text        not null,
  entity_id  text        not null,
  -- XState's id for the delayed send, unique per entity: setting it again replaces it.
  timer_id   text        not null,
  event      jsonb       not null,
  fire_at    timestamptz not null,
  created_at timestamptz not null default now(),
  constraint timers_entity_timer_key unique (machine, entity_id, timer_id)
);
create index timers_due on timers (fire_at);
