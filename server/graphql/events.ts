/**
 * createEventEndpoint (issue 17, DESIGN.md §14): tenant admins register where
 * events go; the signing secret is made and encrypted by the server and is in
 * the payload once. Endpoints and their delivery log (eventEndpoints,
 * EventEndpoint.eventDeliveries, events) are the ordinary table fields, under
 * RLS (tenant admins of the tenant only).
 */
import { get, type Step } from "postgraphile/grafast";
import { extendSchema, gql } from "postgraphile/utils";
import type { PgExecutor } from "postgraphile/@dataplan/pg";
import { inRequestTransaction, resultFields } from "./mutation.js";
import type { MasterKey } from "../auth/masterKey.js";
import { createEventEndpoint } from "../events/endpoints.js";

export function makeEventsPlugin(masterKey: MasterKey, production: boolean) {
  return extendSchema((build) => {
    // The build's registry is typed loosely (any); this is the executor every table uses.
    const executor = build.input.pgRegistry.pgExecutors.main as PgExecutor | undefined;
    const endpoints = build.input.pgRegistry.pgResources.event_endpoints;
    if (!executor || !endpoints) throw new Error("The event_endpoints resource is missing from the schema");
    return {
      typeDefs: gql`
        input CreateEventEndpointInput {
          clientMutationId: String
          "Where events are POSTed: https (plain http to loopback only outside production)."
          url: String!
          "Patterns of the types to send: <area>.<entity>.<created|updated|deleted>, * for a segment (a final * for the rest); default [\\"*\\"]."
          eventTypes: [String!]
          description: String
          "A store's system: it receives that store's retail events only, and none its own sync made."
          storeId: UUID
        }
        type CreateEventEndpointPayload {
          clientMutationId: String
          eventEndpoint: EventEndpoint
          "The signing secret (whsec_…) for verifying webhook-signature: shown here once."
          secret: String!
        }
        extend type Mutation {
          "Registers an event endpoint in the caller's tenant (tenant admins)."
          createEventEndpoint(input: CreateEventEndpointInput!): CreateEventEndpointPayload
        }
      `,
      objects: {
        Mutation: {
          plans: {
            createEventEndpoint: (_$root, fieldArgs) =>
              inRequestTransaction(executor, fieldArgs, (client, input) =>
                createEventEndpoint(
                  client,
                  masterKey,
                  {
                    url: input.url as string,
                    eventTypes: (input.eventTypes as string[] | undefined) ?? null,
                    description: (input.description as string | undefined) ?? null,
                    storeId: (input.storeId as string | undefined) ?? null,
                  },
                  { production },
                ),
              ),
          },
        },
        CreateEventEndpointPayload: {
          plans: {
            eventEndpoint: ($r: Step) => endpoints.get({ tenant_id: get($r, "tenantId"), id: get($r, "id") }),
            ...resultFields("secret"),
          },
        },
      },
    };
  }, "AuthHubEventsPlugin");
}
