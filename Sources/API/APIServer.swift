import EventLog
import Foundation
import Hummingbird
import Logging
import NIOCore
import Orchestration
import PipelineEngine
import Pipelines
import PostgresEventStore
import PostgresNIO

/// The `api` role: Topsail's HTTP API, on Gate's paths where Spinnaker has them.
///
/// Executions: `GET /pipelines/{id}`, `PUT /pipelines/{id}/cancel|pause|resume`,
/// `PATCH /pipelines/{id}/stages/{ref}` (judgment, skip wait), `PUT /pipelines/{id}/stages/{ref}/restart`,
/// `GET /executions`, `GET /applications/{app}/pipelines`, and triggering a saved pipeline with
/// `POST /pipelines/{app}/{nameOrId}`. Health: `/health`, `/ready`.
public struct APIServer: Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// Request bodies larger than this are refused with 413.
        public var maxBodyBytes: Int

        public init(host: String = "127.0.0.1", port: Int = 8084, maxBodyBytes: Int = 1 << 20) {
            self.host = host
            self.port = port
            self.maxBodyBytes = maxBodyBytes
        }
    }

    let client: PostgresClient
    let repository: ExecutionRepository
    let configuration: Configuration
    let logger: Logger

    public init(client: PostgresClient, repository: ExecutionRepository, configuration: Configuration, logger: Logger) {
        self.client = client
        self.repository = repository
        self.configuration = configuration
        self.logger = logger
    }

    public func application() -> some ApplicationProtocol {
        Application(
            router: router(), configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "topsail"),
            logger: logger)
    }

    func router() -> Router<APIContext> {
        let router = Router(context: APIContext.self)
        router.middlewares.add(ErrorMiddleware(logger: logger))
        router.middlewares.add(AuthenticationMiddleware(identities: Identities(store: repository.eventStore)))
        router.get("/health") { _, _ in Self.json(["status": "ok"]) }
        router.get("/ready") { _, _ in
            guard await databaseAnswers() else {
                throw APIError(.serviceUnavailable, "unavailable", "PostgreSQL does not answer; the API is not ready")
            }
            return Self.json(["status": "ready"])
        }
        router.get("/pipelines/:id") { _, context in
            let id = try context.parameters.require("id")
            guard let view = try await repository.view(id) else { throw APIError.notFound("no execution \(id)") }
            try await authorize(context, .read, application: view.application)
            return try Self.json(view)
        }
        router.put("/pipelines/:id/cancel") { request, context in
            try await control(request, context, "cancel", .cancel(by: Self.actor(context), reason: request.uri.queryParameters["reason"].map(String.init)))
        }
        router.put("/pipelines/:id/pause") { request, context in
            try await control(request, context, "pause", .pause(by: Self.actor(context)))
        }
        router.put("/pipelines/:id/resume") { request, context in
            try await control(request, context, "resume", .resume(by: Self.actor(context)))
        }
        router.put("/pipelines/:id/stages/:stage/restart") { request, context in
            let ref = try context.parameters.require("stage")
            return try await control(request, context, "restart stage \(ref) of", .restartStage(refID: ref, by: Self.actor(context)))
        }
        router.patch("/pipelines/:id/stages/:stage") { request, context in
            let ref = try context.parameters.require("stage")
            let body = try await self.body(request)
            let by = Self.actor(context)
            if body["skipRemainingWait"]?.boolValue == true {
                return try await control(request, context, "skip the wait of stage \(ref) of", .skipWait(refID: ref, by: by)) { state in
                    state.config(ref)?.type == "wait" ? nil : "stage \(ref) is not a wait stage"
                }
            }
            guard let status = body["judgmentStatus"]?.stringValue, let judgment = Judgment(rawValue: status.lowercased()) else {
                throw APIError.badRequest("give judgmentStatus (continue or stop), or skipRemainingWait: true")
            }
            let input = body["judgmentInput"]?.stringValue
            return try await control(request, context, "judge stage \(ref) of", .judge(refID: ref, judgment: judgment, input: input, by: by)) { state in
                JudgeStageHandler.problem(ref, input: input, state: state)
            }
        }
        router.get("/executions") { request, context in
            let query = request.uri.queryParameters
            if let ids = query["executionIds"] {
                var views: [ExecutionView] = []
                for id in ids.split(separator: ",").prefix(100) {
                    if let view = try await repository.view(String(id)), try await may(context, .read, application: view.application) { views.append(view) }
                }
                return try Self.json(views)
            }
            var filter = try Self.filter(request)
            filter.pipelineID = query["pipelineConfigIds"].map(String.init)
            return try await list(filter, readableBy: context)
        }
        router.get("/applications/:app/pipelines") { request, context in
            try await authorize(context, .read, application: try context.parameters.require("app"))
            var filter = try Self.filter(request)
            filter.application = try context.parameters.require("app")
            return try await list(filter, readableBy: context)
        }
        router.post("/pipelines") { request, context in try await savePipeline(request, context) }
        router.get("/audit") { request, context in
            let query = request.uri.queryParameters
            var filter = AuditLog.Filter()
            filter.actor = query["actor"].map(String.init)
            filter.application = query["application"].map(String.init)
            filter.type = query["type"].map(String.init)
            filter.includeSystem = query["includeSystem"] == "true"
            for (name, keyPath) in [("since", \AuditLog.Filter.since), ("until", \AuditLog.Filter.until)] {
                guard let text = query[Substring(name)] else { continue }
                guard let date = ISO8601DateFormatter().date(from: String(text)) else {
                    throw APIError.badRequest("\(name) must be an ISO 8601 time such as 2026-11-27T10:00:00Z, got '\(text)'")
                }
                filter[keyPath: keyPath] = date
            }
            if let after = query["after"] {
                guard let value = Int64(after), value >= 0 else { throw APIError.badRequest("after must be a log position, got '\(after)'") }
                filter.after = value
            }
            if let limit = query["limit"] {
                guard let value = Int(limit), (1...1000).contains(value) else { throw APIError.badRequest("limit must be 1…1000, got '\(limit)'") }
                filter.limit = value
            }
            // The whole log is for admins; an application's part for those who may read it.
            if let application = filter.application {
                try await authorize(context, .read, application: application)
            } else if try context.requireCaller().isAdmin == false {
                throw APIError(.forbidden, "forbidden", "only admins read the whole audit log; give application=NAME for one you may read")
            }
            let page = try await AuditLog(client: client, logger: logger).page(filter)
            return try Self.json(AuditPage(events: page.entries, next: page.next))
        }
        router.get("/applications") { _, context in
            let caller = try context.requireCaller()
            let all = try await ApplicationReadModel(client: client, logger: logger).list()
            return try Self.json(all.filter { Authorization.allows(caller, .read, application: $0) })
        }
        router.post("/applications") { request, context in try await saveApplication(request, context) }
        router.get("/applications/:app") { _, context in
            let name = try context.parameters.require("app")
            try await authorize(context, .read, application: name)
            guard let latest = try await ApplicationStore(store: repository.eventStore).documents.latest(name) else {
                throw APIError.notFound("no application \(name)")
            }
            var document = latest.document.objectValue ?? [:]
            document["version"] = .number(Double(latest.version))
            return try Self.json(JSONValue.object(document))
        }
        router.delete("/applications/:app") { request, context in
            let name = try context.parameters.require("app")
            try await authorize(context, .write, application: name)
            guard let version = try await ApplicationStore(store: repository.eventStore).documents.delete(name, metadata: Self.metadata(context)) else {
                throw APIError.notFound("no application \(name)")
            }
            return try Self.json(["name": .string(name), "version": .number(Double(version)), "deleted": true] as JSONValue)
        }
        router.get("/applications/:app/history") { request, context in
            let name = try context.parameters.require("app")
            try await authorize(context, .read, application: name)
            let limit = Int(request.uri.queryParameters["limit"] ?? "100") ?? 100
            let history = try await ApplicationStore(store: repository.eventStore).documents.history(name, limit: min(max(limit, 1), 1000))
            guard !history.isEmpty else { throw APIError.notFound("no application \(name)") }
            return try Self.json(history)
        }
        router.get("/pipelineConfigs/:id/history") { request, context in
            let id = try context.parameters.require("id")
            let limit = Int(request.uri.queryParameters["limit"] ?? "100") ?? 100
            let history = try await PipelineConfigStore(store: repository.eventStore).history(id, limit: min(max(limit, 1), 1000))
            guard !history.isEmpty else { throw APIError.notFound("no pipeline \(id)") }
            for version in history {
                if let application = version.document?["application"]?.stringValue { try await authorize(context, .read, application: application) }
            }
            return try Self.json(history)
        }
        router.get("/applications/:app/pipelineConfigs") { _, context in
            try await authorize(context, .read, application: try context.parameters.require("app"))
            return try Self.json(try await PipelineConfigReadModel(client: client, logger: logger).list(application: try context.parameters.require("app")))
        }
        router.get("/applications/:app/pipelineConfigs/:pipeline") { _, context in
            let (app, name) = (try context.parameters.require("app"), try context.parameters.require("pipeline"))
            try await authorize(context, .read, application: app)
            guard let config = try await PipelineConfigReadModel(client: client, logger: logger).get(application: app, nameOrID: name) else {
                throw APIError.notFound("application \(app) has no pipeline named or with id '\(name)'")
            }
            return try Self.json(config)
        }
        router.delete("/pipelines/:id/:pipeline") { request, context in
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
        // The router names a path segment once: here the first one after /pipelines is the
        // application, not an execution id.
        router.post("/pipelines/:id/:pipeline") { request, context in
            try await trigger(request, context, application: try context.parameters.require("id"), nameOrID: try context.parameters.require("pipeline"))
        }
        return router
    }

    // MARK: - Handlers

    private func control(
        _ request: Request, _ context: APIContext, _ action: String, _ message: ExecutionMessage,
        check: @Sendable (ExecutionState) -> String? = { _ in nil }
    ) async throws -> Response {
        let id = try context.parameters.require("id")
        let state = try await repository.load(id)
        guard state.version > 0 else { throw APIError.notFound("no execution \(id)") }
        try await authorize(context, .execute, application: state.pipeline.application)
        if case let .judge(ref, _, _, _) = message, let caller = context.caller, !Authorization.mayJudge(caller, stage: state.config(ref).map { .object($0.json) }) {
            throw APIError(.forbidden, "forbidden", "\(caller.user) may not judge stage \(ref): it is restricted to its selectedStageRoles")
        }
        if let problem = check(state) { throw APIError.conflict("cannot \(action) execution \(id): \(problem)") }
        let events = try await repository.handle(message, executionID: id, metadata: Self.metadata(context))
        guard !events.isEmpty else { throw APIError.conflict("cannot \(action) execution \(id): it is \(state.status.rawValue)") }
        guard let view = try await repository.view(id) else { throw APIError.notFound("no execution \(id)") }
        return try Self.json(view)
    }

    /// Executions matching `filter` that the caller may read. (A page may come out shorter than
    /// `limit` when some rows are filtered away; `after` still continues it.)
    private func list(_ filter: ExecutionReadModel.Filter, readableBy context: APIContext) async throws -> Response {
        let summaries = try await ExecutionReadModel(client: client, logger: logger).list(filter)
        var readable: [String: Bool] = [:]
        var visible: [ExecutionSummary] = []
        for summary in summaries {
            let key = summary.application ?? ""
            if readable[key] == nil { readable[key] = try await may(context, .read, application: summary.application) }
            if readable[key] == true { visible.append(summary) }
        }
        return try Self.json(visible.map(ExecutionSummaryView.init))
    }

    /// Whether the caller has `permission` on `application` (executions without one are open).
    private func may(_ context: APIContext, _ permission: Permission, application: String?) async throws -> Bool {
        let caller = try context.requireCaller()
        guard let application, !caller.isAdmin else { return true }
        let document = try await ApplicationStore(store: repository.eventStore).documents.latest(application)?.document
        return Authorization.allows(caller, permission, application: document)
    }

    /// Refuses with 403 (naming the roles that would do) unless the caller has `permission`.
    private func authorize(_ context: APIContext, _ permission: Permission, application: String?) async throws {
        let caller = try context.requireCaller()
        guard let application, !caller.isAdmin else { return }
        let document = try await ApplicationStore(store: repository.eventStore).documents.latest(application)?.document
        guard Authorization.allows(caller, permission, application: document) else {
            throw APIError(.forbidden, "forbidden", Authorization.refusal(caller, permission, application: application, document))
        }
    }

    private func trigger(_ request: Request, _ context: APIContext, application: String, nameOrID: String) async throws -> Response {
        try await authorize(context, .execute, application: application)
        let body = try await self.body(request, allowEmpty: true)
        guard let pipeline = try await savedPipeline(application: application, nameOrID: nameOrID) else {
            throw APIError.notFound("application \(application) has no pipeline named or with id '\(nameOrID)'")
        }
        guard !pipeline.disabled else { throw APIError.conflict("pipeline \(pipeline.name ?? nameOrID) is disabled") }
        let given = body["parameters"]?.objectValue ?? [:]
        let parameters: [String: JSONValue]
        do {
            parameters = try pipeline.parameters(with: given)
        } catch {
            throw APIError.badRequest("\(error)")
        }
        var trigger = body.objectValue ?? [:]
        trigger["type"] = trigger["type"] ?? "manual"
        trigger["user"] = trigger["user"] ?? .string(Self.actor(context))
        trigger["parameters"] = .object(parameters)
        let id = try await repository.trigger(pipeline, trigger: .object(trigger), parameters: parameters, metadata: Self.metadata(context))
        return try Self.json(["id": id, "ref": "/pipelines/\(id)"], status: .accepted)
    }

    /// Saves a pipeline (the body, Spinnaker pipeline JSON) as the newest version of its id (one
    /// is made when it has none). `?basedOn=N`: refused with 409 unless the pipeline is still at
    /// version N (0: new), so a save from a stale copy loses nothing; `force=true` saves anyway.
    private func savePipeline(_ request: Request, _ context: APIContext) async throws -> Response {
        var body = try await self.body(request)
        if body["id"]?.stringValue?.isEmpty ?? true { body = .object((body.objectValue ?? [:]).merging(["id": .string(UUID().uuidString.lowercased())]) { $1 }) }
        let pipeline: PipelineConfig
        switch PipelineValidation.parse(body) {
        case .success(let parsed): pipeline = parsed
        case .failure(let problems):
            throw APIError(.badRequest, "invalid_pipeline", "the pipeline is not valid: \(problems.problems.count) problem(s)",
                           problems: problems.problems.map { APIError.Problem(path: $0.path, stage: $0.stage, message: $0.message) })
        }
        guard pipeline.application?.isEmpty == false, pipeline.name?.isEmpty == false else {
            throw APIError(.badRequest, "invalid_pipeline", "a saved pipeline needs an application and a name",
                           problems: [.init(path: pipeline.application == nil ? "application" : "name", stage: nil, message: "required")])
        }
        try await authorize(context, .write, application: pipeline.application)
        if let id = pipeline.id, let existing = try await PipelineConfigStore(store: repository.eventStore).load(id), existing.application != pipeline.application {
            // Moving a pipeline to another application changes the one it leaves too.
            try await authorize(context, .write, application: existing.application)
        }
        let basedOn = try Self.basedOn(request)
        let store = PipelineConfigStore(store: repository.eventStore)
        let id = pipeline.id ?? ""
        do {
            let version = try await store.save(pipeline, basedOn: basedOn, metadata: Self.metadata(context))
            return try Self.json(["id": .string(id), "version": .number(Double(version))] as JSONValue)
        } catch EventStoreError.versionConflict(_, _, let actual) {
            throw APIError.conflict("pipeline \(id) is at version \(actual), not \(basedOn ?? 0): reload it and save again (or force=true)")
        }
    }

    /// Creates or updates an application: `{"name", "description", "email", "attributes", "permissions"}`,
    /// with `?basedOn=N` / `force=true` as for pipelines.
    private func saveApplication(_ request: Request, _ context: APIContext) async throws -> Response {
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
        for field in ["attributes", "permissions"] where body[field] != nil && body[field] != .null && body[field]?.objectValue == nil {
            throw APIError(.badRequest, "invalid_application", "\(field) must be an object", problems: [.init(path: field, stage: nil, message: "not an object")])
        }
        if try await ApplicationStore(store: repository.eventStore).documents.latest(name) != nil {
            try await authorize(context, .write, application: name)
        }
        let basedOn = try Self.basedOn(request)
        do {
            let version = try await ApplicationStore(store: repository.eventStore).documents.save(body, id: name, basedOn: basedOn, metadata: Self.metadata(context))
            return try Self.json(["name": .string(name), "version": .number(Double(version))] as JSONValue)
        } catch EventStoreError.versionConflict(_, _, let actual) {
            throw APIError.conflict("application \(name) is at version \(actual), not \(basedOn ?? 0): reload it and save again (or force=true)")
        }
    }

    /// `?basedOn=N` unless `force=true`.
    static func basedOn(_ request: Request) throws -> Int64? {
        let query = request.uri.queryParameters
        guard query["force"] != "true", let text = query["basedOn"] else { return nil }
        guard let value = Int64(text), value >= 0 else { throw APIError.badRequest("basedOn must be a version number, got '\(text)'") }
        return value
    }

    static func metadata(_ context: APIContext) -> EventMetadata {
        EventMetadata(actor: actor(context), source: "api")
    }

    private func savedPipeline(application: String, nameOrID: String) async throws -> PipelineConfig? {
        try await PipelineLookup(client: client, logger: logger).find(application: application, nameOrID: nameOrID)
    }

    // MARK: - Helpers

    /// The request body as JSON, within the size limit.
    private func body(_ request: Request, allowEmpty: Bool = false) async throws -> JSONValue {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: configuration.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "payload_too_large", "the request body is larger than \(configuration.maxBodyBytes) bytes")
        }
        if buffer.readableBytes == 0 && allowEmpty { return .object([:]) }
        guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(buffer: buffer)), value.objectValue != nil else {
            throw APIError.badRequest("the request body must be a JSON object")
        }
        return value
    }

    private static func filter(_ request: Request) throws -> ExecutionReadModel.Filter {
        let query = request.uri.queryParameters
        var filter = ExecutionReadModel.Filter()
        if let limit = query["limit"] {
            guard let value = Int(limit), (1...1000).contains(value) else { throw APIError.badRequest("limit must be 1…1000, got '\(limit)'") }
            filter.limit = value
        }
        if let statuses = query["statuses"] {
            filter.statuses = try statuses.split(separator: ",").map { name in
                guard let status = ExecutionStatus(rawValue: name.uppercased()) else {
                    throw APIError.badRequest("unknown status '\(name)'; use \(ExecutionStatus.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                return status
            }
        }
        filter.pipelineName = query["pipelineName"].map(String.init)
        filter.after = query["after"].map(String.init)
        return filter
    }

    /// Who acts: the authenticated caller.
    private static func actor(_ context: APIContext) -> String {
        context.caller?.user ?? "anonymous"
    }

    private func databaseAnswers() async -> Bool {
        let client = self.client
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask { (try? await client.query("SELECT 1", logger: Logger(label: "topsail.ready"))) != nil }
            group.addTask {
                try? await Task.sleep(for: .seconds(2))
                return false
            }
            defer { group.cancelAll() }
            return await group.next() ?? false
        }
    }

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }

    static func json(_ value: [String: String]) -> Response {
        (try? json(value, status: .ok)) ?? Response(status: .ok)
    }
}

/// An execution in a listing (Spinnaker-like field names).
public struct ExecutionSummaryView: Encodable, Sendable {
    let id: String
    let application: String?
    let name: String?
    let pipelineConfigId: String?
    let status: String
    let triggerType: String?
    let triggeredBy: String?
    let buildTime: Date
    let startTime: Date?
    let endTime: Date?

    init(_ summary: ExecutionSummary) {
        id = summary.id
        application = summary.application
        name = summary.pipelineName
        pipelineConfigId = summary.pipelineID
        status = summary.status.rawValue
        triggerType = summary.triggerType
        triggeredBy = summary.triggeredBy
        buildTime = summary.triggeredAt
        startTime = summary.startedAt
        endTime = summary.completedAt
    }
}

/// A page of the audit log; `next` continues it (`?after=next`), nil at the end.
struct AuditPage: Encodable {
    let events: [AuditLog.Entry]
    let next: Int64?

    enum CodingKeys: String, CodingKey { case events, next }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(events, forKey: .events)
        // Explicitly null at the end, so clients need not tell "absent" from "last page".
        try container.encode(next, forKey: .next)
    }
}
