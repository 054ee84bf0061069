import { status } from '@grpc/grpc-js';

/** A gRPC status the emulator answers with; `details` is what clients see after "N CODE: ". */
export class GrpcError extends Error {
  readonly code: status;
  constructor(code: status, details: string) {
    super(details);
    this.code = code;
  }
}

export const invalid = (details: string) => new GrpcError(status.INVALID_ARGUMENT, details);
export const notFound = (details: string) => new GrpcError(status.NOT_FOUND, details);
export const precondition = (details: string) => new GrpcError(status.FAILED_PRECONDITION, details);
export const unimplemented = (details: string) =>
  new GrpcError(status.UNIMPLEMENTED, `${details} (not supported by the emulator)`);
