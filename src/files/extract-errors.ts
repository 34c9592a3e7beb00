/** A document whose text cannot be had, for a reason its owner can act on: the file's status becomes `error` with it, and it is not retried. */
export class Unusable extends Error {
  override name = 'Unusable';
}
