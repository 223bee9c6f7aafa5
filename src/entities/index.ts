export { type EntityView, getEntity, resumeEntity } from './query.ts';
