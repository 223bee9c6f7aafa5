-- Finds the saga steps whose compensation failed for good without reading the others.
--
-- Each job runner start looks for steps stopped at a compensation no engine had
-- (`resumeStepsMissingHandlers`). saga_steps keeps every completed compensable run, so
-- that lookup scanned the whole table, more of it with every order. Failed compensations
-- are rare and stay few: indexed on their own, the lookup reads only them.
--
-- A plain CREATE INDEX: it holds off writes to saga_steps (not to events or entities)
-- while it reads the table once.
create index saga_steps_compensation_failed on saga_steps (seq)
  where status = 'compensation-failed';
