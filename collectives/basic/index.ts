import type { Algorithm } from '../types.js';
import { bruckAllgather } from './allgather-bruck.js';
import { rdAllgather } from './allgather-rd.js';
import { ringAllgather } from './allgather-ring.js';
import { hierarchicalAllgather } from './allgather-hier.js';
import { pairwiseAlltoall } from './alltoall-pairwise.js';
import { ringSendrecv } from './sendrecv-ring.js';
import { disseminationBarrier } from './barrier-dissemination.js';
import { binomialBroadcast } from './broadcast-binomial.js';
import { chainBroadcast } from './broadcast-chain.js';
import { binomialReduce } from './reduce-binomial.js';
import { ringReduce } from './reduce-ring.js';
import { rhReducescatter } from './reducescatter-rh.js';
import { ringReducescatter } from './reducescatter-ring.js';
import { hierarchicalReducescatter } from './reducescatter-hier.js';

/** allgather, reducescatter, broadcast, reduce, alltoall, sendrecv, barrier */
export const BASIC_ALGOS: Algorithm[] = [
  ringAllgather, rdAllgather, bruckAllgather,
  ringReducescatter, rhReducescatter,
  binomialBroadcast, chainBroadcast,
  binomialReduce, ringReduce,
  pairwiseAlltoall,
  ringSendrecv,
  disseminationBarrier,
  hierarchicalReducescatter, hierarchicalAllgather,
];
