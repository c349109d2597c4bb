import Access
import EventLog
import Expressions
import Foundation
import Hummingbird
import Orchestration
import PipelineEngine
import Pipelines
import ReadModels

/// Execution routes: reading, listing, controlling and triggering executions (Gate's paths).
extension APIServer {
    func addExecutionRoutes(to routes: Routes) {
        routes.on(.get, "/pipelines/:id", .application(.read)) { request, context in
            let id = try context.parameters.require("id")
            // ?version=N: the execution as it stood after its N-th event (the UI's replay).
            let version = try Self.integer(request.uri.queryParameters["version"], "version", in: 1...Int64.max)
            guard var view = try await repository.view(id, through: version) else { throw APIError.notFound("no execution \(id)") }
            try await authorize(context, .read, application: view.application)
            view.notifications = try await NotificationOutcomes(client: client, logger: logger).of(id)
            return try Self.json(view)
        }
        routes.on(.get, "/pipelines/:id/events", .application(.read)) { request, context in
            let id = try context.parameters.require("id")
            let query = request.uri.queryParameters
            let after = try Self.integer(query["after"], "after", in: 0...Int64.max) ?? 0
            let limit = Int(try Self.integer(query["limit"], "limit", in: 1...1000) ?? 100)
            guard let state = try await repository.view(id) else { throw APIError.notFound("no execution \(id)") }
            try await authorize(context, .read, application: state.application)
            let events = try await repository.timeline(id, after: after, limit: limit)
            return try Self.json(EventPage(events: events, next: events.count == limit ? events.last?.version : nil))
        }
        routes.on(.get, "/pipelines/:id/evaluateExpression", .application(.read)) { request, context in
            guard let expression = request.uri.queryParameters["expression"] else {
                throw APIError.badRequest("give the expression to evaluate: ?expression=${...}")
            }
            return try await evaluate(String(expression), context)
        }
        routes.on(.post, "/pipelines/:id/evaluateExpression", .application(.read)) { request, context in
            guard let expression = try await self.body(request)["expression"]?.stringValue else {
                throw APIError.badRequest("give the expression to evaluate: {\"expression\": \"${...}\"}")
            }
            return try await evaluate(expression, context)
        }
        routes.on(.put, "/pipelines/:id/cancel", .application(.execute)) { request, context in
            try await control(request, context, "cancel", .cancel(by: Self.actor(context), reason: request.uri.queryParameters["reason"].map(String.init)))
        }
        routes.on(.put, "/pipelines/:id/pause", .application(.execute)) { request, context in
            try await control(request, context, "pause", .pause(by: Self.actor(context)))
        }
        routes.on(.put, "/pipelines/:id/resume", .application(.execute)) { request, context in
            try await control(request, context, "resume", .resume(by: Self.actor(context)))
        }
        routes.on(.put, "/pipelines/:id/stages/:stage/restart", .application(.execute)) { request, context in
            let ref = try context.parameters.require("stage")
            return try await control(request, context, "restart stage \(ref) of", .restartStage(refID: ref, by: Self.actor(context)))
        }
        routes.on(.patch, "/pipelines/:id/stages/:stage", .application(.execute)) { request, context in
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
        routes.on(.get, "/executions", .authenticated) { request, context in
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
        routes.on(.get, "/applications/:app/pipelines", .application(.read)) { request, context in
            try await authorize(context, .read, application: try context.parameters.require("app"))
            var filter = try Self.filter(request)
            filter.application = try context.parameters.require("app")
            return try await list(filter, readableBy: context)
        }
    }

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
        switch try await ExecutionCommands(repository: repository).control(message, executionID: id, metadata: Self.metadata(context)) {
        case .success: break
        case .failure(.unknownExecution): throw APIError.notFound("no execution \(id)")
        case .failure(let refusal): throw APIError.conflict("cannot \(action) execution \(id): \(refusal)")
        }
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

    func trigger(_ request: Request, _ context: APIContext, application: String, nameOrID: String) async throws -> Response {
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
        var identity = try context.requireCaller()
        if let name = body["runAsUser"]?.stringValue {
            // Run as a service account: the caller must be allowed to use it, and it must have EXECUTE.
            let account = try await serviceAccount(name, for: context, path: "runAsUser")
            if let refusal = try await ApplicationAccess(store: repository.eventStore).refusal(account, .execute, application: application) {
                throw APIError(.forbidden, "forbidden", refusal)
            }
            trigger["user"] = .string(account.user)
            identity = account
        }
        trigger["parameters"] = .object(parameters)
        let recorded = TriggerIdentity.recording(identity, in: .object(trigger))
        let id = try await ExecutionCommands(repository: repository).trigger(pipeline, trigger: recorded, parameters: parameters, metadata: Self.metadata(context))
        return try Self.json(["id": id, "ref": "/pipelines/\(id)"], status: .accepted)
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
