import type { Algorithm } from '../types.js';

/** allgather, reducescatter, broadcast, reduce, alltoall, sendrecv, barrier */
export const BASIC_ALGOS: Algorithm[] = [];
