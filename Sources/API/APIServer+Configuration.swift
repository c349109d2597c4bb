import Access
import EventLog
import Foundation
import Hummingbird
import PipelineEngine
import Pipelines
import Triggers
import ReadModels

/// Configuration routes: saved pipelines and applications (Front50's part of the API).
extension APIServer {
    func addConfigurationRoutes(to routes: Routes) {
        routes.on(.post, "/pipelines", .application(.write)) { request, context in try await savePipeline(request, context) }
        routes.on(.get, "/applications", .authenticated) { _, context in
            let caller = try context.requireCaller()
            let all = try await ApplicationReadModel(client: client, logger: logger).list()
            return try Self.json(all.filter { Authorization.allows(caller, .read, application: $0) })
        }
        routes.on(.post, "/applications", .application(.write)) { request, context in try await saveApplication(request, context) }
        routes.on(.get, "/applications/:app", .application(.read)) { _, context in
            let name = try context.parameters.require("app")
            try await authorize(context, .read, application: name)
            guard let latest = try await ApplicationStore(store: repository.eventStore).documents.latest(name) else {
                throw APIError.notFound("no application \(name)")
            }
            var document = latest.document.objectValue ?? [:]
            document["version"] = .number(Double(latest.version))
            return try Self.json(JSONValue.object(document))
        }
        routes.on(.delete, "/applications/:app", .application(.write)) { request, context in
            let name = try context.parameters.require("app")
            try await authorize(context, .write, application: name)
            guard let version = try await ApplicationStore(store: repository.eventStore).documents.delete(name, metadata: Self.metadata(context)) else {
                throw APIError.notFound("no application \(name)")
            }
            return try Self.json(["name": .string(name), "version": .number(Double(version)), "deleted": true] as JSONValue)
        }
        routes.on(.get, "/applications/:app/history", .application(.read)) { request, context in
            let name = try context.parameters.require("app")
            try await authorize(context, .read, application: name)
            let limit = Int(try Self.integer(request.uri.queryParameters["limit"], "limit", in: 1...1000) ?? 100)
            let history = try await ApplicationStore(store: repository.eventStore).documents.history(name, limit: limit)
            guard !history.isEmpty else { throw APIError.notFound("no application \(name)") }
            return try Self.json(history)
        }
        routes.on(.get, "/pipelineConfigs/:id/history", .application(.read)) { request, context in
            let id = try context.parameters.require("id")
            let limit = Int(try Self.integer(request.uri.queryParameters["limit"], "limit", in: 1...1000) ?? 100)
            let history = try await PipelineConfigStore(store: repository.eventStore).history(id, limit: limit)
            guard !history.isEmpty else { throw APIError.notFound("no pipeline \(id)") }
            for version in history {
                if let application = version.document?["application"]?.stringValue { try await authorize(context, .read, application: application) }
            }
            return try Self.json(history)
        }
        routes.on(.get, "/applications/:app/pipelineConfigs", .application(.read)) { _, context in
            try await authorize(context, .read, application: try context.parameters.require("app"))
            return try Self.json(try await PipelineConfigReadModel(client: client, logger: logger).list(application: try context.parameters.require("app")))
        }
        routes.on(.get, "/applications/:app/pipelineConfigs/:pipeline", .application(.read)) { request, context in
            let (app, name) = (try context.parameters.require("app"), try context.parameters.require("pipeline"))
            try await authorize(context, .read, application: app)
            // From the log, not the read model: a pipeline saved a moment ago is found (apply relies on it).
            guard let config = try await savedPipeline(application: app, nameOrID: name) else {
                throw APIError.notFound("application \(app) has no pipeline named or with id '\(name)'")
            }
            if Self.wantsYAML(request) {
                return Response(status: .ok, headers: [.contentType: "application/yaml; charset=utf-8"],
                                body: .init(byteBuffer: ByteBuffer(string: try YAMLDocuments.yaml(.object(config.json)))))
            }
            return try Self.json(JSONValue.object(config.json))
        }
        routes.on(.delete, "/pipelines/:id/:pipeline", .application(.write)) { request, context in
            let (app, name) = (try context.parameters.require("id"), try context.parameters.require("pipeline"))
            try await authorize(context, .write, application: app)
            guard let pipeline = try await savedPipeline(application: app, nameOrID: name), let id = pipeline.id else {
                throw APIError.notFound("application \(app) has no pipeline named or with id '\(name)'")
            }
            guard let version = try await PipelineConfigStore(store: repository.eventStore).delete(id, metadata: Self.metadata(context)) else {
                throw APIError.notFound("pipeline \(id) is already deleted")
            }
            return try Self.json(["id": .string(id), "version": .number(Double(version)), "deleted": true] as JSONValue)
        }
    }

    /// Saves a pipeline (the body, Spinnaker pipeline JSON) as the newest version of its id (one
    /// is made when it has none). `?basedOn=N`: refused with 409 unless the pipeline is still at
    /// version N (0: new), so a save from a stale copy loses nothing; `force=true` saves anyway.
    func savePipeline(_ request: Request, _ context: APIContext) async throws -> Response {
        var body = try await documentBody(request)
        if body["id"]?.stringValue?.isEmpty ?? true { body = .object((body.objectValue ?? [:]).merging(["id": .string(UUID().uuidString.lowercased())]) { $1 }) }
        var pipeline: PipelineConfig
        switch PipelineValidation.parse(body, disabledStageTypes: configuration.disabledStageTypes) {
        case .success(let parsed): pipeline = parsed
        case .failure(let problems):
            throw APIError(.badRequest, "invalid_pipeline", "the pipeline is not valid: \(problems.problems.count) problem(s)",
                           problems: problems.problems.map { APIError.Problem(path: $0.path, stage: $0.stage, message: $0.message) })
        }
        let notificationProblems = NotificationValidation.problems(of: pipeline)
        guard notificationProblems.isEmpty else {
            throw APIError(.badRequest, "invalid_pipeline", "the pipeline's notifications are not valid: \(notificationProblems.count) problem(s)",
                           problems: notificationProblems.map { APIError.Problem(path: $0.path, stage: nil, message: $0.message) })
        }
        let triggerProblems = TriggerValidation.problems(of: pipeline)
        guard triggerProblems.isEmpty else {
            throw APIError(.badRequest, "invalid_pipeline", "the pipeline's triggers are not valid: \(triggerProblems.count) problem(s)",
                           problems: triggerProblems.map { APIError.Problem(path: $0.path, stage: nil, message: $0.message) })
        }
        if SecretSeal.hasPlainTriggerSecrets(pipeline.json) {
            // Only sealed secrets reach the log (decision 0015).
            guard let seal = configuration.secretSeal else {
                throw APIError(.badRequest, "invalid_pipeline",
                               "a trigger has a secret and this installation has no secrets key to seal it: start Topsail with TOPSAIL_SECRETS_KEY (or --secrets-key)")
            }
            pipeline = PipelineConfig(json: try seal.sealingTriggerSecrets(of: pipeline.json))
        }
        guard pipeline.application?.isEmpty == false, pipeline.name?.isEmpty == false else {
            throw APIError(.badRequest, "invalid_pipeline", "a saved pipeline needs an application and a name",
                           problems: [.init(path: pipeline.application == nil ? "application" : "name", stage: nil, message: "required")])
        }
        try await authorize(context, .write, application: pipeline.application)
        if let application = pipeline.application, try await ApplicationAccess(store: repository.eventStore).standing(application) == .unknown,
           let refusal = creationRefusal(try context.requireCaller()) {
            // Saving into an application that does not exist makes it exist (in listings, for
            // permissions to come): that takes the right to create it.
            throw APIError(.forbidden, "forbidden", "application \(application) does not exist and " + refusal)
        }
        if let id = pipeline.id, let existing = try await PipelineConfigStore(store: repository.eventStore).load(id), existing.application != pipeline.application {
            // Moving a pipeline to another application changes the one it leaves too.
            try await authorize(context, .write, application: existing.application)
        }
        var runners = [try context.requireCaller()]
        for (index, trigger) in (pipeline.json["triggers"]?.arrayValue ?? []).enumerated() {
            guard let name = trigger["runAsUser"]?.stringValue else { continue }
            runners.append(try await serviceAccount(name, for: context, path: "triggers[\(index)].runAsUser"))
        }
        try await checkChildPipelines(of: pipeline, runAs: runners)
        let basedOn = try Self.basedOn(request)
        let store = PipelineConfigStore(store: repository.eventStore)
        let id = pipeline.id ?? ""
        do {
            let version = try await store.save(pipeline, basedOn: basedOn, metadata: Self.metadata(context))
            var answer: [String: JSONValue] = ["id": .string(id), "version": .number(Double(version))]
            let cron = CronPreview.next(5, of: pipeline, after: Date(), defaultZone: configuration.cronTimeZone)
            if !cron.isEmpty { answer["cron"] = .array(cron) }
            return try Self.json(JSONValue.object(answer))
        } catch EventStoreError.versionConflict(_, _, let actual) {
            throw APIError.conflict("pipeline \(id) is at version \(actual), not \(basedOn ?? 0): reload it and save again (or force=true)")
        }
    }

    /// Creates or updates an application: `{"name", "description", "email", "attributes", "permissions"}`,
    /// with `?basedOn=N` / `force=true` as for pipelines.
    func saveApplication(_ request: Request, _ context: APIContext) async throws -> Response {
        let body = try await self.body(request)
        guard let name = body["name"]?.stringValue else {
            throw APIError(.badRequest, "invalid_application", "an application needs a name", problems: [.init(path: "name", stage: nil, message: "required")])
        }
        if let problem = ApplicationStore.problem(name: name) {
            throw APIError(.badRequest, "invalid_application", problem, problems: [.init(path: "name", stage: nil, message: problem)])
        }
        if let email = body["email"], email != .null, !(email.stringValue?.contains("@") ?? false) {
            throw APIError(.badRequest, "invalid_application", "email must be an email address",
                           problems: [.init(path: "email", stage: nil, message: "not an email address")])
        }
        let notificationProblems = NotificationValidation.problems(body["notifications"], path: "notifications")
        guard notificationProblems.isEmpty else {
            throw APIError(.badRequest, "invalid_application", "the application's notifications are not valid: \(notificationProblems.count) problem(s)",
                           problems: notificationProblems.map { APIError.Problem(path: $0.path, stage: nil, message: $0.message) })
        }
        for field in ["attributes", "permissions"] where body[field] != nil && body[field] != .null && body[field]?.objectValue == nil {
            throw APIError(.badRequest, "invalid_application", "\(field) must be an object", problems: [.init(path: field, stage: nil, message: "not an object")])
        }
        let caller = try context.requireCaller()
        switch try await ApplicationAccess(store: repository.eventStore).standing(name) {
        case .live:
            try await authorize(context, .write, application: name)
        case .deleted:
            // Re-creating a deleted application takes the right to create one and WRITE under the
            // permissions it had, which still govern its pipelines and executions.
            if let refusal = creationRefusal(caller) { throw APIError(.forbidden, "forbidden", refusal) }
            try await authorize(context, .write, application: name)
        case .unknown:
            if let refusal = creationRefusal(caller) { throw APIError(.forbidden, "forbidden", refusal) }
        }
        let basedOn = try Self.basedOn(request)
        do {
            let version = try await ApplicationStore(store: repository.eventStore).documents.save(body, id: name, basedOn: basedOn, metadata: Self.metadata(context))
            return try Self.json(["name": .string(name), "version": .number(Double(version))] as JSONValue)
        } catch EventStoreError.versionConflict(_, _, let actual) {
            throw APIError.conflict("application \(name) is at version \(actual), not \(basedOn ?? 0): reload it and save again (or force=true)")
        }
    }

    /// Every `pipeline` stage starts a child execution as its parent's trigger identity, which
    /// therefore needs EXECUTE on the child's application: refused here with 400 naming the stage
    /// for each identity the pipeline may run as (the caller saving it, each trigger's
    /// `runAsUser`). The stage checks again when it runs.
    func checkChildPipelines(of pipeline: PipelineConfig, runAs identities: [Caller]) async throws {
        let configs = PipelineConfigStore(store: repository.eventStore)
        let access = ApplicationAccess(store: repository.eventStore)
        var problems: [APIError.Problem] = []
        for (index, stage) in (pipeline.json["stages"]?.arrayValue ?? []).enumerated() where stage["type"]?.stringValue == "pipeline" {
            guard let childID = stage["pipeline"]?.stringValue, !childID.contains("${") else { continue }
            let application = try await configs.load(childID)?.application ?? stage["application"]?.stringValue
            for identity in identities {
                if let refusal = try await access.refusal(identity, .execute, application: application) {
                    problems.append(.init(path: "stages[\(index)].pipeline", stage: stage["refId"]?.stringValue ?? "#\(index)",
                                          message: "it would start pipeline \(childID) as \(identity.user), but \(refusal)"))
                }
            }
        }
        guard problems.isEmpty else {
            throw APIError(.badRequest, "invalid_pipeline", "the pipeline starts child pipelines its trigger identity may not run: "
                           + problems.map(\.message).joined(separator: "; "), problems: problems)
        }
    }

    /// The service account `name`, which the caller must be allowed to run as: 400 when there is
    /// no such account (naming `path`), 403 when the caller lacks one of its roles.
    func serviceAccount(_ name: String, for context: APIContext, path: String) async throws -> Caller {
        guard let account = try await Identities(store: repository.eventStore).serviceAccount(name) else {
            throw APIError(.badRequest, "unknown_service_account", "there is no service account \(name) (topsail service-accounts create)",
                           problems: [.init(path: path, stage: nil, message: "no such service account")])
        }
        let caller = try context.requireCaller()
        guard Authorization.mayUse(caller, serviceAccount: account) else {
            throw APIError(.forbidden, "forbidden", Authorization.serviceAccountRefusal(caller, account))
        }
        return account
    }

    /// `?basedOn=N` unless `force=true`.
    static func basedOn(_ request: Request) throws -> Int64? {
        let query = request.uri.queryParameters
        guard try Self.boolean(query["force"], "force") != true, let text = query["basedOn"] else { return nil }
        guard let value = Int64(text), value >= 0 else { throw APIError.badRequest("basedOn must be a version number, got '\(text)'") }
        return value
    }

}
