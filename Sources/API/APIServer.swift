import EventLog
import Expressions
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
        /// Requests each caller may make; beyond it the answer is 429. Nil: unlimited.
        public var rateLimit: RateLimit?
        /// Who may create applications: admins and these roles. Empty: every authenticated caller.
        public var applicationCreatorRoles: Set<String>
        /// Stage types this installation disables: a pipeline with one is refused on save and trigger.
        public var disabledStageTypes: Set<String>
        /// Bearer JWTs from this OIDC issuer are accepted besides API tokens. Nil: tokens only.
        public var oidc: OIDCVerifier.Configuration?
        /// A request not answered by then gets 503 (while PostgreSQL is away, for one).
        public var requestDeadline: Duration = .seconds(10)

        public init(
            host: String = "127.0.0.1", port: Int = 8084, maxBodyBytes: Int = 1 << 20, rateLimit: RateLimit? = RateLimit(),
            applicationCreatorRoles: Set<String> = [], disabledStageTypes: Set<String> = [], oidc: OIDCVerifier.Configuration? = nil
        ) {
            self.host = host
            self.port = port
            self.maxBodyBytes = maxBodyBytes
            self.rateLimit = rateLimit
            self.applicationCreatorRoles = applicationCreatorRoles
            self.disabledStageTypes = disabledStageTypes
            self.oidc = oidc
        }
    }

    let client: PostgresClient
    let repository: ExecutionRepository
    let configuration: Configuration
    let oidc: OIDCVerifier?
    let logger: Logger

    /// Fails when the OIDC keys cannot be read.
    public init(client: PostgresClient, repository: ExecutionRepository, configuration: Configuration, logger: Logger) async throws {
        self.client = client
        self.repository = repository
        self.configuration = configuration
        if let oidc = configuration.oidc { self.oidc = try await OIDCVerifier(oidc) } else { self.oidc = nil }
        self.logger = logger
    }

    /// The HTTP server as a service; `onServerRunning` learns its port (useful with port 0).
    public func application(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        Application(
            router: router(), configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "topsail"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: logger)
    }

    func router() -> Router<APIContext> {
        let router = Router(context: APIContext.self)
        // Outermost first: metrics see the status the error middleware chose.
        router.middlewares.add(MetricsMiddleware())
        router.middlewares.add(ErrorMiddleware(logger: logger))
        router.middlewares.add(DeadlineMiddleware(deadline: configuration.requestDeadline))
        router.middlewares.add(AuthenticationMiddleware(identities: Identities(store: repository.eventStore), oidc: oidc))
        if let rateLimit = configuration.rateLimit { router.middlewares.add(RateLimitMiddleware(limiter: RateLimiter(rateLimit))) }
        router.get("/health") { _, _ in Self.json(["status": "ok"]) }
        router.get("/metrics") { _, _ in TopsailMetrics.response() }
        router.get("/openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.json)))
        }
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
        router.get("/pipelines/:id/events") { request, context in
            let id = try context.parameters.require("id")
            let query = request.uri.queryParameters
            let after = try Self.integer(query["after"], "after", in: 0...Int64.max) ?? 0
            let limit = Int(try Self.integer(query["limit"], "limit", in: 1...1000) ?? 100)
            guard let state = try await repository.view(id) else { throw APIError.notFound("no execution \(id)") }
            try await authorize(context, .read, application: state.application)
            let events = try await repository.timeline(id, after: after, limit: limit)
            return try Self.json(EventPage(events: events, next: events.count == limit ? events.last?.version : nil))
        }
        router.get("/pipelines/:id/evaluateExpression") { request, context in
            guard let expression = request.uri.queryParameters["expression"] else {
                throw APIError.badRequest("give the expression to evaluate: ?expression=${...}")
            }
            return try await evaluate(String(expression), context)
        }
        router.post("/pipelines/:id/evaluateExpression") { request, context in
            guard let expression = try await self.body(request)["expression"]?.stringValue else {
                throw APIError.badRequest("give the expression to evaluate: {\"expression\": \"${...}\"}")
            }
            return try await evaluate(expression, context)
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
        addConfigurationRoutes(to: router)
        addAuditRoute(to: router)
        // The router names a path segment once: here the first one after /pipelines is the
        // application, not an execution id.
        router.post("/pipelines/:id/:pipeline") { request, context in
            try await trigger(request, context, application: try context.parameters.require("id"), nameOrID: try context.parameters.require("pipeline"))
        }
        return router
    }

    // MARK: - Handlers

    /// Spinnaker's evaluateExpression: `{"result": value}`, or `{"result": null, "error": why}`
    /// when the expression fails (the request itself succeeded).
    func evaluate(_ expression: String, _ context: APIContext) async throws -> Response {
        let id = try context.parameters.require("id")
        guard expression.count <= 10_000 else { throw APIError.badRequest("the expression is longer than 10000 characters") }
        guard let view = try await repository.view(id) else { throw APIError.notFound("no execution \(id)") }
        try await authorize(context, .read, application: view.application)
        do {
            guard let value = try await repository.evaluate(expression, executionID: id) else { throw APIError.notFound("no execution \(id)") }
            return try Self.json(["expression": .string(expression), "result": value] as JSONValue)
        } catch let error as ExpressionError {
            return try Self.json(["expression": .string(expression), "result": .null, "error": .string(error.description)] as JSONValue)
        }
    }

    func control(
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
    func list(_ filter: ExecutionReadModel.Filter, readableBy context: APIContext) async throws -> Response {
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
    func may(_ context: APIContext, _ permission: Permission, application: String?) async throws -> Bool {
        try await refusal(context, permission, application: application) == nil
    }

    /// Refuses with 403 (naming the roles that would do) unless the caller has `permission`.
    func authorize(_ context: APIContext, _ permission: Permission, application: String?) async throws {
        if let refusal = try await refusal(context, permission, application: application) {
            throw APIError(.forbidden, "forbidden", refusal)
        }
    }

    /// Why the caller lacks `permission` on `application`, or nil when it has it (executions
    /// without an application are open).
    private func refusal(_ context: APIContext, _ permission: Permission, application: String?) async throws -> String? {
        let caller = try context.requireCaller()
        guard let application, !caller.isAdmin else { return nil }
        let document = try await ApplicationStore(store: repository.eventStore).documents.latest(application)?.document
        return Authorization.allows(caller, permission, application: document)
            ? nil : Authorization.refusal(caller, permission, application: application, document)
    }

    private func trigger(_ request: Request, _ context: APIContext, application: String, nameOrID: String) async throws -> Response {
        try await authorize(context, .execute, application: application)
        let body = try await self.body(request, allowEmpty: true)
        guard let pipeline = try await savedPipeline(application: application, nameOrID: nameOrID) else {
            throw APIError.notFound("application \(application) has no pipeline named or with id '\(nameOrID)'")
        }
        guard !pipeline.disabled else { throw APIError.conflict("pipeline \(pipeline.name ?? nameOrID) is disabled") }
        if let problem = PipelineValidation.disabledStages(of: pipeline, configuration.disabledStageTypes).first {
            throw APIError.conflict("pipeline \(pipeline.name ?? nameOrID) cannot run on this installation: \(problem)")
        }
        let given = body["parameters"]?.objectValue ?? [:]
        let parameters: [String: JSONValue]
        do {
            parameters = try pipeline.parameters(with: given)
        } catch {
            throw APIError.badRequest("\(error)")
        }
        var trigger = body.objectValue ?? [:]
        trigger["type"] = trigger["type"] ?? "manual"
        // As Gate does: the trigger's user is who is authenticated, whatever the body says.
        trigger["user"] = .string(Self.actor(context))
        if let name = body["runAsUser"]?.stringValue {
            // Run as a service account: the caller must be allowed to use it, and it must have EXECUTE.
            let account = try await serviceAccount(name, for: context, path: "runAsUser")
            let document = try await ApplicationStore(store: repository.eventStore).documents.latest(application)?.document
            guard Authorization.allows(account, .execute, application: document) else {
                throw APIError(.forbidden, "forbidden", Authorization.refusal(account, .execute, application: application, document))
            }
            trigger["user"] = .string(account.user)
        }
        trigger["parameters"] = .object(parameters)
        let id = try await repository.trigger(pipeline, trigger: .object(trigger), parameters: parameters, metadata: Self.metadata(context))
        return try Self.json(["id": id, "ref": "/pipelines/\(id)"], status: .accepted)
    }

    /// Who acts, from where, and why: the caller, `api`, the client's `X-Correlation-Id` when it
    /// sent one, and this request's id as the cause of every event it appends.
    static func metadata(_ context: APIContext) -> EventMetadata {
        EventMetadata(correlationID: context.correlationID, causationID: context.requestID, actor: actor(context), source: "api")
    }

    func savedPipeline(application: String, nameOrID: String) async throws -> PipelineConfig? {
        try await PipelineLookup(client: client, logger: logger).find(application: application, nameOrID: nameOrID)
    }

    // MARK: - Helpers

    /// The request body as JSON, within the size limit.
    func body(_ request: Request, allowEmpty: Bool = false) async throws -> JSONValue {
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
        if let path = Self.nulCharacter(in: value) {
            throw APIError(.badRequest, "bad_request", "text may not contain the NUL character (\\u0000)",
                           problems: [.init(path: path, stage: nil, message: "contains \\u0000")])
        }
        return value
    }

    /// Where a string or a key holds U+0000, which PostgreSQL's jsonb cannot store; nil when none does.
    static func nulCharacter(in value: JSONValue, path: String = "$") -> String? {
        switch value {
        case .string(let text): return text.unicodeScalars.contains("\0") ? path : nil
        case .array(let items):
            for (index, item) in items.enumerated() {
                if let found = nulCharacter(in: item, path: "\(path)[\(index)]") { return found }
            }
            return nil
        case .object(let fields):
            for (key, item) in fields {
                if key.unicodeScalars.contains("\0") { return path }
                if let found = nulCharacter(in: item, path: path == "$" ? key : "\(path).\(key)") { return found }
            }
            return nil
        default: return nil
        }
    }

    /// An optional query parameter that is `true` or `false`.
    static func boolean(_ text: Substring?, _ name: String) throws -> Bool? {
        switch text {
        case nil: return nil
        case "true": return true
        case "false": return false
        case let text?: throw APIError.badRequest("\(name) must be true or false, got '\(text)'")
        }
    }

    /// An optional whole-number query parameter within `range`.
    static func integer(_ text: Substring?, _ name: String, in range: ClosedRange<Int64>) throws -> Int64? {
        guard let text else { return nil }
        guard let value = Int64(text), range.contains(value) else {
            throw APIError.badRequest("\(name) must be a whole number in \(range.lowerBound)…\(range.upperBound), got '\(text)'")
        }
        return value
    }

    static func filter(_ request: Request) throws -> ExecutionReadModel.Filter {
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
    static func actor(_ context: APIContext) -> String {
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

    public init(_ summary: ExecutionSummary) {
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
