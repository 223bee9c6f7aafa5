-- Lets the ingest upsert of an entity that is already pending be a HOT update.
--
-- Postgres updates a row in place (HOT: no new index entries) only when no column that
-- any index uses, in its key or its predicate, changes, and the page has room. The old
-- `entities_pending` index had `last_version` in its predicate, so every appended batch
-- rewrote each touched entity row and all four of its index entries. The queue is now
-- keyed on `pending_since` alone: it is set when an entity gets its first unapplied
-- event and cleared by the step that applies the last one, so "pending_since is not
-- null" is "has unapplied events". Appending more events to a pending entity changes
-- only `last_version`, which no index uses.

-- Entities resumed by an operator got a pending_since even with nothing to apply; they
-- are not pending.
update entities set pending_since = null
where pending_since is not null and applied_version >= last_version;

create index entities_pending_since on entities (pending_since)
  where pending_since is not null and status <> 'failed';
drop index entities_pending;

-- Room on each page for the new row version of a HOT update (applies to pages written
-- from now on).
alter table entities set (fillfactor = 80);
