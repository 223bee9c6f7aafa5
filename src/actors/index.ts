export { Dispatcher, type DispatcherOptions, type EffectSink, type PlannedJob } from './dispatcher.ts';
export {
  applyEvents,
  type EntityRow,
  type EntityStatus,
  type PlannedEffect,
  type StepResult,
} from './step.ts';
export { type TimerChange, TimerScheduler, type TimerSchedulerOptions, writeTimers } from './timers.ts';
