-- The event store, the entities (one durable actor each), the ingest checkpoint and the
-- quarantine. Runs with search_path set to the engine's schema.

create table events (
  position       bigint generated always as identity primary key,
  machine        text        not null,
  entity_id      text        not null,
  version        integer     not null,
  type           text        not null,
  schema_version integer     not null default 1,
  data           jsonb       not null,
  metadata       jsonb       not null default '{}'::jsonb,
  -- Dedupe key: Nats-Msg-Id, else the CloudEvents source+id, else stream+sequence;
  -- for handler outcomes the job's idempotency key.
  message_id     text        not null,
  source         text        not null check (source in ('nats', 'handler', 'timer', 'operator')),
  subject        text,
  nats_stream    text,
  nats_seq       bigint,
  published_at   timestamptz,
  recorded_at    timestamptz not null default now(),
  -- Positions are handed out before commit, so they are not commit order; readers of the
  -- global log use the transaction id to avoid skipping a late commit.
  transaction_id xid8        not null default pg_current_xact_id(),
  constraint events_message_id_key unique (message_id),
  constraint events_entity_version_key unique (machine, entity_id, version)
);
create index events_by_transaction on events (transaction_id, position);

create table entities (
  machine         text        not null,
  entity_id       text        not null,
  machine_version integer,
  status          text        not null default 'active'
                  check (status in ('active', 'done', 'failed', 'compensating', 'needs-attention')),
  state           jsonb,
  snapshot        jsonb,
  -- Events 1..last_version are stored; 1..applied_version have changed the snapshot.
  last_version    integer     not null default 0,
  applied_version integer     not null default 0,
  pending_since   timestamptz,
  error           jsonb,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  primary key (machine, entity_id)
);
-- The dispatcher's work queue: only entities with unapplied events, oldest first.
create index entities_pending on entities (pending_since)
  where applied_version < last_version and status <> 'failed';
create index entities_by_status on entities (machine, status, updated_at desc);
create index entities_by_id on entities (entity_id);

-- One row per JetStream stream: the highest stream sequence stored (as an event or in
-- quarantine). It is the ingest leader's fencing token: a batch commits only if it
-- advances the checkpoint from the value the leader last saw.
create table ingest_checkpoints (
  stream     text        primary key,
  last_seq   bigint      not null,
  updated_at timestamptz not null default now()
);

create table quarantine (
  id           bigint generated always as identity primary key,
  reason_code  text        not null check (reason_code in (
                 'malformed-json', 'unknown-subject', 'unknown-type', 'schema-violation',
                 'oversize', 'invalid-entity-id', 'invalid-envelope')),
  reason       text        not null,
  subject      text        not null,
  headers      jsonb       not null default '{}'::jsonb,
  payload      bytea       not null,
  message_id   text        not null,
  nats_stream  text,
  nats_seq     bigint,
  status       text        not null default 'held' check (status in ('held', 'redriven', 'dropped')),
  received_at  timestamptz not null default now(),
  resolved_at  timestamptz,
  constraint quarantine_message_id_key unique (message_id)
);
create index quarantine_held on quarantine (received_at) where status = 'held';
