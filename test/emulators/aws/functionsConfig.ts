/**
 * The rekey config the AWS function tests and the functions benchmark compose: one KMS
 * provider and one DynamoDB DEK store in `region`, one policy, and (with `approvals`) the
 * dual-control block the scheduler checks on every cycle.
 */
export function functionsConfigYaml(region: string, opts: { approvals?: boolean } = {}): string {
  const base = `version: 1
providers:
  aws-prod: { type: aws-kms, regions: [${region}] }
stores:
  orders: { type: dynamodb, table: orders-deks, region: ${region} }
policies:
  - name: pci
    match: { provider: [aws-prod], tags: { data-class: pci } }
    rotate: { every: P90D }
    rewrap: { stores: [orders], verify: full, batchSize: 25 }
`;
  if (!opts.approvals) return base;
  return `${base}approvals:
  approvers: [sec-alice, sec-bob]
  quorum: 2
  expiry: P1D
  require: [policy_change]
  tokens: { hmac: { secretEnv: REKEY_APPROVAL_TOKEN_KEY } }
`;
}
