export { type EntitySummary, type EntityView, getEntity, listEntities, resumeEntity } from './query.ts';
