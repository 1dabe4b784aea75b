/**
 * The analytic step-time / MFU / memory model (`collemu predict`) and the layout planner
 * (`collemu plan`). Programmatic API:
 *   predictStep(input: PredictInput): Prediction      one layout (step.ts)
 *   plan(input: PlanInput): PlanResult                search layouts, best first (plan.ts)
 *   resolveModel, MODEL_PRESETS (models.ts); resolveCluster, presetCluster, CLUSTER_PRESETS (clusters.ts)
 * Errors: PredictError (errors.ts), one line.
 */
export { PredictError } from './errors.js';
export { MODEL_PRESETS, modelFromJson, modelParams, resolveModel, type ModelSpec } from './models.js';
export { CLUSTER_PRESETS, clusterFromJson, collectiveTime, placeGroup, presetCluster, resolveCluster, type Cluster, type ClusterLevel, type Group } from './clusters.js';
export { modelFlopsPerSequence } from './flops.js';
export { layerActivationBytes, stageMemory, GIB } from './memory.js';
export { predictStep, predictWith, resolveLayout, type Breakdown, type CollectiveUse, type Layout, type Prediction, type PredictInput, type RankClass } from './step.js';
export { explain, layoutString, plan, type PlanInput, type PlanResult } from './plan.js';
