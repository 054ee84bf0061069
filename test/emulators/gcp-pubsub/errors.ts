import { status } from '@grpc/grpc-js';
import { GrpcError } from '../gcp-kms/errors.js';

export { GrpcError } from '../gcp-kms/errors.js';

/**
 * The errors Pub/Sub answers with, worded as the service words them (clients and people grep
 * for these): a missing resource is named by its short id, a malformed name in full.
 */
export const notFound = (id: string) =>
  new GrpcError(status.NOT_FOUND, `Resource not found (resource=${id}).`);

export const alreadyExists = (id: string) =>
  new GrpcError(status.ALREADY_EXISTS, `Resource already exists in the project (resource=${id}).`);

export const invalidName = (name: string) =>
  new GrpcError(
    status.INVALID_ARGUMENT,
    `Invalid resource name given (name=${name}). Refer to https://cloud.google.com/pubsub/docs/pubsub-basics#resource_names for more information.`,
  );

export const invalid = (details: string) => new GrpcError(status.INVALID_ARGUMENT, details);

export const precondition = (details: string) => new GrpcError(status.FAILED_PRECONDITION, details);

export const unimplemented = (details: string) =>
  new GrpcError(status.UNIMPLEMENTED, `${details} (not supported by the emulator)`);
