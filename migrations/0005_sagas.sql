-- Saga compensation the engine drives. A handler run that a machine marked compensable
-- becomes a saga step when it completes; `compensateCompleted()` undoes the entity's
-- completed steps newest first, one compensation job at a time.

create table saga_steps (
  -- The run's idempotency key: one step per effect, however often its job ran.
  step_key     text        primary key,
  seq          bigint      generated always as identity,
  machine      text        not null,
  entity_id    text        not null,
  handler      text        not null,
  input        jsonb       not null,
  result       jsonb       not null,
  status       text        not null default 'done'
               check (status in ('done', 'compensating', 'compensated', 'compensation-failed')),
  error        jsonb,
  completed_at timestamptz not null default now(),
  updated_at   timestamptz not null default now()
);
create index saga_steps_by_entity on saga_steps (machine, entity_id, seq);

-- Where the entity's compensation stands, kept by the engine rather than read from the
-- machine: a compensation that failed for good shows as needs-attention whatever state
-- the machine is in, until an operator's retry lets the saga finish.
alter table entities add column saga_state text
  check (saga_state in ('compensating', 'needs-attention'));

-- Events the engine itself appends (saga.compensated, saga.compensationFailed). NOT VALID:
-- every stored row already satisfies the narrower old check, so nothing needs rescanning.
alter table events drop constraint events_source_check;
alter table events add constraint events_source_check
  check (source in ('nats', 'handler', 'timer', 'operator', 'engine')) not valid;
