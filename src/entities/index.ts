export { type EntityView, getEntity } from './query.ts';
