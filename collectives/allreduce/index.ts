import type { Algorithm } from '../types.js';
import { directAllreduce } from './direct.js';
import { hierarchicalAllreduce } from './hierarchical.js';
import { rhdAllreduce } from './rhd.js';
import { ringAllreduce } from './ring.js';
import { torusAllreduce } from './torus.js';
import { treeAllreduce } from './tree.js';

export const ALLREDUCE_ALGOS: Algorithm[] = [ringAllreduce, treeAllreduce, rhdAllreduce, hierarchicalAllreduce, directAllreduce, torusAllreduce];
