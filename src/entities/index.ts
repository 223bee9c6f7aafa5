export {
  type EntitySummary,
  type EntityView,
  getEntity,
  listEntities,
  resumeEntity,
  type SagaView,
} from './query.ts';
