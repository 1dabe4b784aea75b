import type { Algorithm } from '../types.js';
import { ringAllreduce } from './ring.js';

export const ALLREDUCE_ALGOS: Algorithm[] = [ringAllreduce];
