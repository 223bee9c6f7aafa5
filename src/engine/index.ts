export { Engine, type EngineOptions } from './engine.ts';
