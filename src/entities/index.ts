export {
  type EntitySummary,
  type EntityView,
  getEntity,
  listEntities,
  resumeEntity,
  resumeFailedEntities,
  type SagaView,
} from './query.ts';
