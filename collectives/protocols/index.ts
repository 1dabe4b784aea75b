import type { Algorithm } from '../types.js';
import { nvlsAllreduce } from './nvls.js';
import { PROTOCOL_RING_ALGOS } from './ring.js';

/**
 * NCCL protocol variants (ring-ll, ring-ll128, ring-simple) of allreduce, allgather and
 * reducescatter, and NVLS AllReduce (built on the IR's switch operations: see nvls.ts).
 */
export const PROTOCOL_ALGOS: Algorithm[] = [...PROTOCOL_RING_ALGOS, nvlsAllreduce];
