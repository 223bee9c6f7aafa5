import type { TestContext } from './context.ts';

/**
 * Makes Postgres refuse to store `type` events of the given entities, as a failing disk or
 * a broken constraint would, until `allow` lets one through or `remove` drops the trigger.
 */
export async function refuseOutcomes(t: TestContext, type: string, entityIds: string[]) {
  await t.pool.query(`
    create table public.refused_outcomes (entity_id text not null, type text not null);
    create function public.refuse_outcome() returns trigger language plpgsql as $$
    begin
      if exists (select 1 from public.refused_outcomes r where r.entity_id = new.entity_id and r.type = new.type) then
        raise exception 'outcome store unavailable (test)';
      end if;
      return new;
    end $$;
    create trigger refuse_outcome before insert on events
      for each row execute function public.refuse_outcome()`);
  await t.pool.query('insert into public.refused_outcomes select unnest($1::text[]), $2', [entityIds, type]);
  return {
    allow: (entityId: string) =>
      t.pool.query('delete from public.refused_outcomes where entity_id = $1', [entityId]),
    remove: () =>
      t.pool.query(
        'drop trigger refuse_outcome on events; drop function public.refuse_outcome(); drop table public.refused_outcomes',
      ),
  };
}
