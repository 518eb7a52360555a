/**
 * createWebhookEndpoint (issue 7): tenant admins add a Clerk endpoint; the
 * signing secret (given, or made here) is encrypted by the server before SQL
 * sees it and is in the payload once. Endpoints are then read and changed
 * (name, enabled, issuer, role mapping) through the ordinary table fields.
 */
import { get, type Step } from "postgraphile/grafast";
import { extendSchema, gql } from "postgraphile/utils";
import type { PgExecutor } from "postgraphile/@dataplan/pg";
import { inRequestTransaction, resultFields } from "./mutation.js";
import type { MasterKey } from "../auth/masterKey.js";
import { createWebhookEndpoint } from "../webhooks/endpoints.js";

export function makeWebhooksPlugin(masterKey: MasterKey) {
  return extendSchema((build) => {
    // The build's registry is typed loosely (any); this is the executor every table uses.
    const executor = build.input.pgRegistry.pgExecutors.main as PgExecutor | undefined;
    const endpoints = build.input.pgRegistry.pgResources.webhook_endpoints;
    if (!executor || !endpoints) throw new Error("The webhook_endpoints resource is missing from the schema");
    return {
      typeDefs: gql`
        input CreateWebhookEndpointInput {
          clientMutationId: String
          name: String!
          "The Clerk instance's token issuer: the users it creates are bound to it, and it changes no other."
          issuer: String!
          "Clerk organization role → USER or ORG_ADMIN; default {\\"org:admin\\": \\"ORG_ADMIN\\", \\"org:member\\": \\"USER\\"}."
          roleMapping: JSON
          "The endpoint's Svix signing secret (whsec_…) if Clerk already has one; otherwise one is made."
          secret: String
          "A Clerk secret key (sk_…): with it, an hourly job reconciles with Clerk's Backend API. Stored encrypted, never shown."
          clerkSecretKey: String
        }
        type CreateWebhookEndpointPayload {
          clientMutationId: String
          webhookEndpoint: WebhookEndpoint
          "Where Clerk delivers: /webhooks/clerk/<id>."
          path: String!
          "The signing secret (whsec_…): shown here once."
          secret: String!
        }
        extend type Mutation {
          "Adds a Clerk webhook endpoint to the caller's tenant (tenant admins)."
          createWebhookEndpoint(input: CreateWebhookEndpointInput!): CreateWebhookEndpointPayload
        }
      `,
      objects: {
        Mutation: {
          plans: {
            createWebhookEndpoint: (_$root, fieldArgs) =>
              inRequestTransaction(executor, fieldArgs, (client, input) =>
                createWebhookEndpoint(client, masterKey, {
                  name: input.name as string,
                  issuer: input.issuer as string,
                  roleMapping: (input.roleMapping as Record<string, string> | undefined) ?? null,
                  secret: (input.secret as string | undefined) ?? null,
                  clerkSecretKey: (input.clerkSecretKey as string | undefined) ?? null,
                }),
              ),
          },
        },
        CreateWebhookEndpointPayload: {
          plans: {
            webhookEndpoint: ($r: Step) => endpoints.get({ tenant_id: get($r, "tenantId"), id: get($r, "id") }),
            ...resultFields("path", "secret"),
          },
        },
      },
    };
  }, "AuthHubWebhooksPlugin");
}
