-- What a saga undoes: every completed step planned before its `saga.compensated`. A
-- compensable run still in flight when its saga ended is undone once it completes, by a
-- restart that takes only steps planned before that `saga.compensated` (not those of a
-- later attempt) and that ends without a second `saga.compensated` unless it reported a
-- failure on the way.

-- The version of the event whose transition planned the step's run. Steps recorded
-- earlier get it from their key (`<machine>:<entity>:<version>:<index>`); a restart leaves
-- alone a step it cannot place.
alter table saga_steps add column planned_version integer;
update saga_steps set planned_version = (regexp_match(step_key, ':(\d+):\d+$'))[1]::integer;

-- A restart undoes steps planned before this version; NULL for a regular saga (all steps).
alter table entities add column saga_before_version integer;
-- The running saga is a restart: it appends no `saga.compensated` of its own.
alter table entities add column saga_is_restart boolean not null default false;
