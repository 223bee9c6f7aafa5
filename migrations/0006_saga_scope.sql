-- What a saga undoes: the steps planned before it. A compensable run still in flight when
-- its saga finished is undone once it completes, by a saga of its own that undoes only
-- the steps planned before that `saga.compensated`, not those of a later attempt, and that
-- ends without a second `saga.compensated`.

-- The version of the event whose transition planned the step's run (NULL for steps
-- recorded before this migration: every saga includes them, as before).
alter table saga_steps add column planned_version integer;

-- The running saga undoes steps planned before this version (NULL: all of them).
alter table entities add column saga_before_version integer;
-- The running saga only finishes the undo of steps that completed after their saga ended:
-- it appends no `saga.compensated` of its own.
alter table entities add column saga_is_restart boolean not null default false;
