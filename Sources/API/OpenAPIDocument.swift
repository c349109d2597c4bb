import EventLog
import Foundation
import Pipelines

/// The API's OpenAPI 3 document, served at `/openapi.json`. It is written next to the routes it
/// describes; the test suite validates it (openapi-spec-validator) and fuzzes the running server
/// from it (schemathesis), so a route that drifts from it fails there.
enum OpenAPIDocument {
    static let json: String = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(document)) ?? Data("{}".utf8), as: UTF8.self)
    }()

    static var document: JSONValue {
        [
            "openapi": "3.0.3",
            "info": [
                "title": "Topsail API", "version": "1",
                "description": """
                    Topsail's HTTP API: executions, triggers, pipeline and application configuration, and the \
                    audit log. Paths follow Spinnaker's Gate where it has them. Every error is {error, message, status}. \
                    Every answer carries X-Request-Id, the causation id of the events the request appended; a client's \
                    X-Correlation-Id becomes their correlation id.
                    """,
            ],
            "servers": [["url": "/"]],
            "security": [["bearerAuth": []]],
            "tags": .array(["executions", "triggers", "clusters", "pipelines", "applications", "audit", "identities", "health"].map { ["name": .string($0)] }),
            "paths": .object(health.merging(executions) { $1 }.merging(configuration) { $1 }.merging(audit) { $1 }.merging(identities) { $1 }.merging(triggers) { $1 }.merging(clusters) { $1 }),
            "components": [
                "securitySchemes": [
                    "bearerAuth": [
                        "type": "http", "scheme": "bearer",
                        "description": "An API token (topsail tokens create) or, when OIDC is configured, a JWT from its issuer.",
                    ],
                ],
                "schemas": .object(schemas),
            ],
        ]
    }

    // MARK: - Paths

    static var health: [String: JSONValue] {
        [
            "/health": ["get": operation("health", "Liveness: the process answers.", ["200": response("Alive.", ref("Status"))], tag: "health", open: true)],
            "/ready": ["get": operation("ready", "Readiness: PostgreSQL answers.",
                                        ["200": response("Ready.", ref("Status")), "503": errors["503"]!], tag: "health", open: true)],
            "/metrics": ["get": operation("metrics", "Prometheus metrics of this process.",
                                          ["200": response("Prometheus' text exposition format.", ["type": "string"], type: "text/plain")], tag: "health", open: true)],
            "/openapi.json": ["get": operation("openapi", "This document.", ["200": response("The OpenAPI 3 document.", ["type": "object"])], tag: "health", open: true)],
        ]
    }

    static var executions: [String: JSONValue] {
        let execution = ref("Execution")
        let changed = responses(["200": response("The execution after the change.", execution)], "404", "409")
        let listing: [JSONValue] = [
            query("limit", ["type": "integer", "minimum": 1, "maximum": 1000], "Page size (default 20)."),
            query("statuses", ["type": "string", "pattern": "^[A-Za-z_]+(,[A-Za-z_]+)*$"], "Comma-separated statuses, e.g. RUNNING,SUCCEEDED."),
            query("pipelineName", ["type": "string"], "Only executions of this pipeline name."),
            query("after", ["type": "string"], "Keyset paging: executions after this execution id in the listing's order."),
        ]
        let expression: JSONValue = ["type": "string", "maxLength": 10000]
        return [
            "/pipelines/{id}": ["get": operation(
                "getExecution", "An execution with its stages, trigger and times.",
                responses(["200": response("The execution.", execution)], "404"),
                parameters: [executionID, query("version", ["type": "integer", "minimum": 1], "The execution as it stood after its N-th event (replay).")])],
            "/pipelines/{id}/events": ["get": operation(
                "getExecutionEvents", "The execution's own event timeline, in order.",
                responses(["200": response("A page of events; next continues it.", ref("EventPage"))], "404"),
                parameters: [executionID, query("after", ["type": "integer", "minimum": 0], "Events after this stream version."),
                             query("limit", ["type": "integer", "minimum": 1, "maximum": 1000], "Page size (default 100).")])],
            "/pipelines/{id}/evaluateExpression": [
                "get": operation(
                    "evaluateExpression", "Evaluate a ${…} expression against the execution.",
                    responses(["200": response("The result, or the error when the expression fails.", ref("Evaluation"))], "404"),
                    parameters: [executionID, query("expression", ["type": "string", "maxLength": 2000],
                                                    "The expression, e.g. ${trigger.user}; longer ones (up to 10,000 characters) go in a POST.", required: true)]),
                "post": operation(
                    "evaluateExpressionInBody", "Evaluate a ${…} expression, given in the body, against the execution.",
                    responses(["200": response("The result, or the error when the expression fails.", ref("Evaluation"))], "404", "413"),
                    parameters: [executionID], body: body(["type": "object", "required": ["expression"], "properties": ["expression": expression]])),
            ],
            "/pipelines/{id}/cancel": ["put": operation(
                "cancelExecution", "Cancel a running or paused execution.", changed,
                parameters: [executionID, query("reason", ["type": "string"], "Why; recorded with the event.")])],
            "/pipelines/{id}/pause": ["put": operation("pauseExecution", "Pause a running execution.", changed, parameters: [executionID])],
            "/pipelines/{id}/resume": ["put": operation("resumeExecution", "Resume a paused execution.", changed, parameters: [executionID])],
            "/pipelines/{id}/stages/{stageId}/restart": ["put": operation(
                "restartStage", "Restart a finished stage and the stages after it.", changed, parameters: [executionID, stageID])],
            "/pipelines/{id}/stages/{stageId}": ["patch": operation(
                "updateStage", "Answer a manual judgment, or skip the rest of a wait.",
                responses(["200": response("The execution after the change.", execution)], "404", "409", "413"),
                parameters: [executionID, stageID], body: body(ref("StagePatch")))],
            "/executions": ["get": operation(
                "listExecutions", "Executions, newest first, filtered and paged; only those of applications the caller may READ.",
                responses(["200": response("With executionIds, full views of those; otherwise summaries.",
                                           ["type": "array", "items": ["oneOf": [ref("ExecutionSummary"), execution]]])]),
                parameters: [query("executionIds", ["type": "string"], "Comma-separated execution ids (at most 100)."),
                             query("pipelineConfigIds", ["type": "string"], "Only executions of this pipeline id.")] + listing)],
            "/applications/{application}/pipelines": ["get": operation(
                "listApplicationExecutions", "An application's executions, newest first, paged.",
                responses(["200": response("Execution summaries.", ["type": "array", "items": ref("ExecutionSummary")])]),
                parameters: [application] + listing)],
        ]
    }

    static var triggers: [String: JSONValue] {
        let answered = responses(["200": response(
            "The delivery's receipt: what started; for applications the caller may READ, which triggers did not fire and why.",
            ref("TriggerAnswer"))], "404", "413")
        let delivery = body(["type": "object"], required: false)
        let note = " No token needed (senders such as GitHub cannot send one); one that is sent must be valid. A trigger with a secret needs X-Hub-Signature-256 (or X-Hub-Signature, X-Gitlab-Token, X-Topsail-Token); without it the answer is 401 and nothing starts."
        return [
            "/webhooks/{type}/{source}": ["post": operation(
                "deliverWebhook", "A webhook for the triggers of this type and source (Echo's /webhooks/webhook/{source}); Idempotency-Key makes a retry the same delivery." + note,
                answered, parameters: [path("type", "The trigger type, e.g. webhook."), path("source", "The trigger's source.")],
                body: delivery, tag: "triggers", tokenOptional: true)],
            "/webhooks/git/{provider}": ["post": operation(
                "deliverGitEvent", "A repository event from github, gitlab, bitbucket or stash, with the provider's payload and headers; the delivery id makes a retry the same delivery." + note,
                answered, parameters: [path("provider", "github, gitlab, bitbucket or stash.")], body: delivery, tag: "triggers", tokenOptional: true)],
            "/webhooks/cdevents/{source}": ["post": operation(
                "deliverCDEvent", "A CDEvent as a CloudEvent (HTTP binary mode, or structured with application/cloudevents+json) for the cdevents triggers of this source; its source and id make a retry the same delivery." + note,
                answered, parameters: [path("source", "The trigger's source.")], body: delivery, tag: "triggers", tokenOptional: true)],
            "/ci/builds/{master}": ["post": operation(
                "deliverBuild", "A CI build's notification (the Jenkins Notification plugin's JSON, or the generic build JSON of docs/triggers.md); a finished build is one delivery however often it is sent." + note,
                answered, parameters: [path("master", "The CI master the triggers name.")], body: delivery, tag: "triggers", tokenOptional: true)],
        ]
    }

    static var clusters: [String: JSONValue] {
        let serverGroup = object(["name", "account", "region", "cluster", "capacity", "instances"], [
            "name": ["type": "string"], "account": ["type": "string"], "region": ["type": "string"], "cluster": ["type": "string"],
            "image": ["type": "string", "nullable": true], "capacity": ["type": "object"], "instances": ["type": "array", "items": ["type": "object"]],
            "updatedAt": ["type": "string", "format": "date-time"],
        ])
        return [
            "/applications/{application}/serverGroups": ["get": operation(
                "listServerGroups", "An application's server groups (in accounts the caller may READ), from the cluster view.",
                responses(["200": response("Server groups with their capacity and instances.", ["type": "array", "items": serverGroup])]),
                parameters: [application], tag: "clusters")],
            "/applications/{application}/clusters": ["get": operation(
                "listClusters", "An application's clusters by account (accounts the caller may READ).",
                responses(["200": response("Account → cluster names.", ["type": "object", "additionalProperties": ["type": "array", "items": ["type": "string"]]])]),
                parameters: [application], tag: "clusters")],
            "/applications/{application}/clusters/{account}/{cluster}": ["get": operation(
                "getCluster", "One cluster of an application in an account, with its server groups (the caller needs READ on the account).",
                responses(["200": response("The cluster.", object(["name", "account", "application", "serverGroups"], [
                    "name": ["type": "string"], "account": ["type": "string"], "application": ["type": "string"],
                    "serverGroups": ["type": "array", "items": serverGroup],
                ]))], "404"),
                parameters: [application, path("account", "A cloud account."), path("cluster", "A cluster, app-stack-detail.")], tag: "clusters")],
            "/applications/{application}/loadBalancers": ["get": operation(
                "listLoadBalancers", "The load balancers an application's server groups serve behind, or named for it (accounts the caller may READ).",
                responses(["200": response("Load balancers with their server groups.", ["type": "array", "items": ["type": "object"]])]),
                parameters: [application], tag: "clusters")],
            "/securityGroups": ["get": operation(
                "listSecurityGroups", "Security groups by account and region (accounts the caller may READ).",
                responses(["200": response("Account → region → security groups with their ipIngress rules.", ["type": "object"])]), tag: "clusters")],
            "/instances/{account}/{region}/{instanceId}": ["get": operation(
                "getInstance", "One instance: its server group, health and address (the caller needs READ on the account).",
                responses(["200": response("The instance.", ["type": "object"])], "404"),
                parameters: [path("account", "A cloud account."), path("region", "A region."), path("instanceId", "An instance id.")], tag: "clusters")],
            "/applications/{application}/tasks": ["post": operation(
                "runTask", "Run cloud operations as a task (Spinnaker's job shape: {description, job: [{type, …}]}); the jobs run in order as the caller, who needs EXECUTE on the application and WRITE on each account.",
                responses(["202": response("Started.", ref("Triggered"))], "409", "413"),
                parameters: [application], body: body(["type": "object", "required": ["job"], "properties": [
                    "description": ["type": "string"], "job": ["type": "array", "minItems": 1, "maxItems": 20, "items": ["type": "object", "required": ["type"]]],
                ]]), tag: "clusters")],
            "/tasks/{id}": ["get": operation(
                "getTask", "A task's execution, as GET /pipelines/{id} shows it.", responses(["200": response("The task's execution.", ["type": "object"])], "404"),
                parameters: [path("id", "The task's id.")], tag: "clusters")],
        ]
    }

    static var configuration: [String: JSONValue] {
        let history = query("limit", ["type": "integer", "minimum": 1, "maximum": 1000], "Versions (default 100).")
        let basedOn: [JSONValue] = [
            query("basedOn", ["type": "integer", "minimum": 0], "Refuse with 409 unless the document is at this version (0: new)."),
            query("force", ["type": "boolean"], "Save even when basedOn is stale."),
        ]
        let versions = response("Versions, newest first, with who saved each.", ["type": "array", "items": ref("Version")])
        return [
            "/pipelines": ["post": operation(
                "savePipeline", "Save a pipeline (Spinnaker pipeline JSON) as its newest version; one without an id gets one.",
                responses(["200": response("Saved.", ref("Saved"))], "409", "413"), parameters: basedOn, body: body(ref("PipelineConfig")), tag: "pipelines")],
            "/pipelines/{application}/{pipelineNameOrId}": [
                "post": operation(
                    "triggerPipeline", "Trigger a saved pipeline: 202 with the new execution's reference.",
                    responses(["202": response("Triggered.", ref("Triggered"))], "404", "409", "413"),
                    parameters: [application, pipelineNameOrID], body: body(ref("TriggerRequest"), required: false), tag: "pipelines"),
                "delete": operation(
                    "deletePipeline", "Delete a saved pipeline; its history stays.",
                    responses(["200": response("Deleted.", ref("Deleted"))], "404"), parameters: [application, pipelineNameOrID], tag: "pipelines"),
            ],
            "/pipelineConfigs/{id}/history": ["get": operation(
                "pipelineHistory", "Every version of a pipeline.", responses(["200": versions], "404"),
                parameters: [path("id", "A pipeline id."), history], tag: "pipelines")],
            "/applications": [
                "get": operation(
                    "listApplications", "The applications the caller may READ.",
                    responses(["200": response("Applications.", ["type": "array", "items": ref("Application")])]), tag: "applications"),
                "post": operation(
                    "saveApplication", "Create or update an application (creating may be limited to some roles).",
                    responses(["200": response("Saved.", ref("SavedApplication"))], "409", "413"), parameters: basedOn,
                    body: body(ref("Application")), tag: "applications"),
            ],
            "/applications/{application}": [
                "get": operation(
                    "getApplication", "An application's newest version.",
                    responses(["200": response("The application.", ref("Application"))], "404"), parameters: [application], tag: "applications"),
                "delete": operation(
                    "deleteApplication", "Delete an application; its history stays.",
                    responses(["200": response("Deleted.", ref("DeletedApplication"))], "404"), parameters: [application], tag: "applications"),
            ],
            "/applications/{application}/history": ["get": operation(
                "applicationHistory", "Every version of an application.", responses(["200": versions], "404"),
                parameters: [application, history], tag: "applications")],
            "/applications/{application}/pipelineConfigs": ["get": operation(
                "listPipelineConfigs", "An application's saved pipelines.",
                responses(["200": response("Pipelines.", ["type": "array", "items": ref("PipelineConfig")])]), parameters: [application], tag: "pipelines")],
            "/applications/{application}/pipelineConfigs/{pipelineNameOrId}": ["get": operation(
                "getPipelineConfig", "One saved pipeline, by name or id.",
                responses(["200": response("The pipeline.", ref("PipelineConfig"))], "404"), parameters: [application, pipelineNameOrID], tag: "pipelines")],
        ]
    }

    static var audit: [String: JSONValue] {
        let parameters: [JSONValue] = [
            query("actor", ["type": "string"], "Only events by this actor."),
            query("application", ["type": "string"], "Only events of this application."),
            query("type", ["type": "string"], "An event type, or a prefix ending in *."),
            query("since", ["type": "string", "format": "date-time"], "From this time (ISO 8601)."),
            query("until", ["type": "string", "format": "date-time"], "Before this time (ISO 8601)."),
            query("after", ["type": "integer", "minimum": 0], "After this log position."),
            query("limit", ["type": "integer", "minimum": 1, "maximum": 1000], "Page size (default 100)."),
            query("includeSystem", ["type": "boolean"], "Include the engine's own events."),
        ]
        return ["/audit": ["get": operation(
            "audit", "Who did what: events with actor, source, correlation and causation ids. The whole log is for admins; an application's part for its readers.",
            responses(["200": response("A page of events; next continues it.", ref("EventPage"))]), parameters: parameters, tag: "audit")]]
    }

    static var identities: [String: JSONValue] {
        let names: JSONValue = ["type": "array", "items": ["type": "string", "minLength": 1, "maxLength": 100], "maxItems": 100]
        let userName: JSONValue = ["type": "string", "pattern": "^[A-Za-z0-9._@-]{1,100}$"]
        return [
            "/tokens": [
                "get": operation(
                    "listTokens", "API tokens: all of them for admins, the caller's own for anyone else (never the secrets).",
                    responses(["200": response("Tokens.", ["type": "array", "items": ref("Token")])]), tag: "identities"),
                "post": operation(
                    "createToken", "Issue a token (shown once). Anyone may issue one for itself; admins for any user, with roles.",
                    responses(["201": response("The new token.", ref("IssuedToken"))], "413"),
                    body: body(object([], ["user": userName, "name": ["type": "string"], "roles": names]), required: false), tag: "identities"),
            ],
            "/tokens/{tokenId}": ["delete": operation(
                "revokeToken", "Revoke a token: admins any, anyone else its own. Requests with it get 401 from then on.",
                responses(["200": response("Revoked.", object(["id", "revoked"], ["id": ["type": "string"], "revoked": ["type": "boolean"]]))], "404"),
                parameters: [path("tokenId", "A token's id (tsk_<id>_…).")], tag: "identities")],
            "/serviceAccounts": ["post": operation(
                "saveServiceAccount", "Create a service account (what triggers run as), or set its roles. Admins only.",
                responses(["200": response("Saved.", object(["name", "roles"], ["name": ["type": "string"], "roles": names]))], "413"),
                body: body(object(["name", "roles"], ["name": userName, "roles": ["type": "array", "items": ["type": "string", "minLength": 1, "maxLength": 100], "minItems": 1, "maxItems": 100]])),
                tag: "identities")],
        ]
    }

    // MARK: - Building blocks

    static let errors: [String: JSONValue] = [
        "400": response("Malformed: the message names the field or parameter at fault.", ref("Error")),
        "401": response("No valid API token or JWT.", ref("Error")),
        "403": response("The caller lacks the permission; the message names the roles that would do.", ref("Error")),
        "404": response("No such execution, application or pipeline.", ref("Error")),
        "409": response("A conflict: a stale basedOn version, or a status that does not allow the action.", ref("Error")),
        "413": response("The body is larger than the API's limit (--max-body-bytes).", ref("Error")),
        "429": response("Over the caller's rate limit; Retry-After says when to try again.", ref("Error")),
        "503": response("PostgreSQL does not answer; try again shortly.", ref("Error")),
    ]

    /// `success` plus the errors every authenticated route may answer, plus `extra`.
    static func responses(_ success: [String: JSONValue], _ extra: String...) -> [String: JSONValue] {
        let codes = ["400", "401", "403", "429", "503"] + extra
        return success.merging(codes.map { ($0, errors[$0]!) }) { $1 }
    }

    static func operation(
        _ id: String, _ summary: String, _ responses: [String: JSONValue], parameters: [JSONValue] = [], body: JSONValue? = nil,
        tag: String = "executions", open: Bool = false, tokenOptional: Bool = false
    ) -> JSONValue {
        var operation: [String: JSONValue] = ["operationId": .string(id), "summary": .string(summary), "responses": .object(responses), "tags": [.string(tag)]]
        if !parameters.isEmpty { operation["parameters"] = .array(parameters) }
        if let body { operation["requestBody"] = body }
        if open { operation["security"] = [] }
        if tokenOptional { operation["security"] = [[:], ["bearerAuth": []]] }
        return .object(operation)
    }

    static func response(_ description: String, _ schema: JSONValue, type: String = "application/json") -> JSONValue {
        ["description": .string(description), "content": .object([type: ["schema": schema]])]
    }

    static func body(_ schema: JSONValue, required: Bool = true) -> JSONValue {
        ["required": .bool(required), "content": ["application/json": ["schema": schema]]]
    }

    static func query(_ name: String, _ schema: JSONValue, _ description: String, required: Bool = false) -> JSONValue {
        ["name": .string(name), "in": "query", "required": .bool(required), "schema": schema, "description": .string(description)]
    }

    static func path(_ name: String, _ description: String) -> JSONValue {
        ["name": .string(name), "in": "path", "required": true, "schema": ["type": "string", "minLength": 1], "description": .string(description)]
    }

    static func object(_ required: [String], _ properties: [String: JSONValue]) -> JSONValue {
        var schema: [String: JSONValue] = ["type": "object", "properties": .object(properties)]
        if !required.isEmpty { schema["required"] = .array(required.map(JSONValue.string)) }
        return .object(schema)
    }

    static func ref(_ name: String) -> JSONValue { ["$ref": .string("#/components/schemas/\(name)")] }

    static let executionID = path("id", "An execution id.")
    static let stageID = path("stageId", "A stage's refId.")
    static let application = path("application", "An application name.")
    static let pipelineNameOrID = path("pipelineNameOrId", "A pipeline's name or id.")
}
