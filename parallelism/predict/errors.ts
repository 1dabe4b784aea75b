/**
 * The error class of `collemu predict` / `collemu plan` and of the programmatic API
 * (parallelism/predict/): bad input of any kind (unknown model, GPU or cluster, a layout whose
 * product is not the GPU count, a batch that does not divide, heads not divisible by TP, a
 * malformed model or cluster JSON file, ...). The message is one line, ready for "error: ...".
 */
export class PredictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PredictError';
  }
}
