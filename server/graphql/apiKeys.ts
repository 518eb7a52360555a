/**
 * GraphQL mutations that make secrets (issue 6): createApiKey and
 * rotateApiKeySecret. The server generates the secret and encrypts it under the
 * master key (SQL never sees it in the clear); the SQL functions they call run
 * in the request's transaction, as the caller, and decide who may issue what
 * (apikey:write at the key's scope, no scope beyond the caller's own). The
 * secret is in the payload once and nowhere else. revokeApiKey comes from the
 * SQL function authhub.revoke_api_key as PostGraphile exposes it.
 */
import { get, type Step } from "postgraphile/grafast";
import { extendSchema, gql } from "postgraphile/utils";
import type { PgExecutor } from "postgraphile/@dataplan/pg";
import { inRequestTransaction, resultFields } from "./mutation.js";
import type { MasterKey } from "../auth/masterKey.js";
import { issueApiKey, rotateApiKeySecret } from "../openapi/issue.js";

export function makeApiKeysPlugin(masterKey: MasterKey) {
  return extendSchema((build) => {
    // The build's registry is typed loosely (any); this is the executor every table uses.
    const executor = build.input.pgRegistry.pgExecutors.main as PgExecutor | undefined;
    const apiKeys = build.input.pgRegistry.pgResources.api_keys;
    if (!executor || !apiKeys) throw new Error("The api_keys resource is missing from the schema");
    const apiKeyOf = ($result: Step) => apiKeys.get({ tenant_id: get($result, "tenantId"), id: get($result, "id") });
    return {
      typeDefs: gql`
        input CreateApiKeyInput {
          clientMutationId: String
          name: String!
          "Permissions from the catalogue, at most the caller's own at the key's scope."
          scopes: [String!]!
          "The organization whose subtree the key acts in; none: tenant-wide."
          organizationId: UUID
          "Requests per minute (default 1000)."
          rateLimitPerMinute: Int
          expiresAt: Datetime
        }
        type CreateApiKeyPayload {
          clientMutationId: String
          apiKey: ApiKey
          "The key id for X-Api-Key (ak_…)."
          keyId: String!
          "The secret (sk_…): shown here once, never again."
          secret: String!
        }
        input RotateApiKeySecretInput {
          clientMutationId: String
          "The key's row id."
          id: UUID!
          "How long the old secret keeps working (0-604800 s, default 0)."
          gracePeriodSeconds: Int
        }
        type RotateApiKeySecretPayload {
          clientMutationId: String
          apiKey: ApiKey
          keyId: String!
          "The new secret: shown here once, never again."
          secret: String!
        }
        extend type Mutation {
          "Issues an API key for the Open API; the secret is in the payload, once."
          createApiKey(input: CreateApiKeyInput!): CreateApiKeyPayload
          "Gives a key a new secret; the old one works for the grace period only."
          rotateApiKeySecret(input: RotateApiKeySecretInput!): RotateApiKeySecretPayload
        }
      `,
      objects: {
        Mutation: {
          plans: {
            createApiKey: (_$root, fieldArgs) =>
              inRequestTransaction(executor, fieldArgs, (client, input) =>
                issueApiKey(client, masterKey, {
                  name: input.name as string,
                  scopes: input.scopes as string[],
                  organizationId: (input.organizationId as string | undefined) ?? null,
                  rateLimitPerMinute: (input.rateLimitPerMinute as number | undefined) ?? null,
                  expiresAt: input.expiresAt ? new Date(input.expiresAt as string) : null,
                }),
              ),
            rotateApiKeySecret: (_$root, fieldArgs) =>
              inRequestTransaction(executor, fieldArgs, (client, input) =>
                rotateApiKeySecret(client, masterKey, input.id as string, (input.gracePeriodSeconds as number | undefined) ?? 0),
              ),
          },
        },
        CreateApiKeyPayload: { plans: { apiKey: apiKeyOf, ...resultFields("keyId", "secret") } },
        RotateApiKeySecretPayload: { plans: { apiKey: apiKeyOf, ...resultFields("keyId", "secret") } },
      },
    };
  }, "AuthHubApiKeysPlugin");
}
