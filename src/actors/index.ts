export { Dispatcher, type DispatcherOptions, type EffectSink, type PlannedJob } from './dispatcher.ts';
export {
  applyEvents,
  ENTITY_STATUSES,
  type EntityRow,
  type EntityStatus,
  LIVE_STATUSES,
  type PlannedEffect,
  type StepResult,
} from './step.ts';
export { type TimerChange, TimerScheduler, type TimerSchedulerOptions, writeTimers } from './timers.ts';
