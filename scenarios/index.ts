/**
 * The scenarios of `collemu scenario` (one file each in this directory): what collemu's models and
 * emulator say about questions from the research the project starts from.
 */
import type { Scenario } from './common.js';
import { scenario as diminishingReturns } from './diminishing-returns.js';
import { scenario as llama3 } from './llama3-405b.js';
import { scenario as bandwidthDomains } from './bandwidth-domains.js';
import { scenario as commProfile } from './comm-profile.js';

export type { Scenario, ScenarioOutput, ScenarioRunOptions } from './common.js';

/** In the order `collemu scenario list` shows them. */
export const SCENARIOS: readonly Scenario[] = [diminishingReturns, llama3, bandwidthDomains, commProfile];

export function findScenario(name: string): Scenario | undefined {
  return SCENARIOS.find((s) => s.name === name);
}
