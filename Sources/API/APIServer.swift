import Access
import EventLog
import Foundation
import Hummingbird
import Logging
import NIOCore
import PipelineEngine
import Pipelines
import PostgresEventStore
import PostgresNIO
import Triggers

/// The `api` role: Topsail's HTTP API, on Gate's paths where Spinnaker has them.
///
/// This file sets up the server (middlewares, health, metrics, the OpenAPI document) and the
/// authorization checks every route shares; the routes are by concern in `APIServer+Executions`,
/// `+Configuration` and `+Audit`, and reading requests in `+Requests`. `/openapi.json` describes
/// them all.
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
        /// Seals the secrets of triggers in saved pipelines and opens them to check deliveries.
        /// Nil: a pipeline whose trigger has a secret cannot be saved.
        public var secretSeal: SecretSeal?
        /// The zone of cron triggers that name none, for the fire times a save answers with.
        public var cronTimeZone = TimeZone(identifier: "UTC")!

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
    /// One intake for every delivery (it caches which pipelines listen).
    let intake: TriggerIntake
    let logger: Logger

    /// Fails when the OIDC keys cannot be read.
    public init(client: PostgresClient, repository: ExecutionRepository, configuration: Configuration, logger: Logger) async throws {
        self.client = client
        self.repository = repository
        self.configuration = configuration
        if let oidc = configuration.oidc { self.oidc = try await OIDCVerifier(oidc) } else { self.oidc = nil }
        intake = TriggerIntake(client: client, repository: repository, seal: configuration.secretSeal, logger: logger)
        self.logger = logger
    }

    /// The HTTP server as a service; `onServerRunning` learns its port (useful with port 0).
    public func application(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        Application(
            router: router(), configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "topsail"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: logger)
    }

    func router() -> Router<APIContext> { routes().router }

    /// Every route with its access declaration (the permission matrix test reads it).
    public func routeTable() -> [RouteEntry] { routes().table }

    /// The router, its routes registered through ``Routes`` (each declares who may call it).
    func routes() -> Routes {
        let router = Router(context: APIContext.self)
        let routes = Routes(router)
        // Outermost first: metrics see the status the error middleware chose.
        router.middlewares.add(MetricsMiddleware())
        router.middlewares.add(SecurityHeadersMiddleware())
        router.middlewares.add(ErrorMiddleware(logger: logger))
        router.middlewares.add(DeadlineMiddleware(deadline: configuration.requestDeadline))
        router.middlewares.add(AuthenticationMiddleware(identities: Identities(store: repository.eventStore), oidc: oidc))
        if let rateLimit = configuration.rateLimit { router.middlewares.add(RateLimitMiddleware(limiter: RateLimiter(rateLimit))) }
        routes.on(.get, "/health", .open) { _, _ in Self.json(["status": "ok"]) }
        routes.on(.get, "/metrics", .open) { _, _ in TopsailMetrics.response() }
        routes.on(.get, "/openapi.json", .open) { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.json)))
        }
        routes.on(.get, "/ready", .open) { _, _ in
            guard await databaseAnswers() else {
                throw APIError(.serviceUnavailable, "unavailable", "PostgreSQL does not answer; the API is not ready")
            }
            return Self.json(["status": "ready"])
        }
        addExecutionRoutes(to: routes)
        addConfigurationRoutes(to: routes)
        addAuditRoute(to: routes)
        addIdentityRoutes(to: routes)
        addTriggerRoutes(to: routes)
        addClusterRoutes(to: routes)
        addCloudRoutes(to: routes)
        addUIRoutes(to: routes)
        addOIDCSignInRoutes(to: routes)
        // The router names a path segment once: here the first one after /pipelines is the
        // application, not an execution id.
        routes.on(.post, "/pipelines/:id/:pipeline", .application(.execute)) { request, context in
            try await trigger(request, context, application: try context.parameters.require("id"), nameOrID: try context.parameters.require("pipeline"))
        }
        return routes
    }

    // MARK: - Authorization

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
    /// without an application are open; a deleted application's last permissions still apply).
    private func refusal(_ context: APIContext, _ permission: Permission, application: String?) async throws -> String? {
        try await ApplicationAccess(store: repository.eventStore).refusal(try context.requireCaller(), permission, application: application)
    }

    /// Why the caller may not create applications, or nil when it may: admins and the
    /// configured creator roles may (everyone, when none are configured).
    func creationRefusal(_ caller: Caller) -> String? {
        let creators = configuration.applicationCreatorRoles
        guard !(creators.isEmpty || caller.isAdmin || !creators.isDisjoint(with: caller.roles)) else { return nil }
        return "\(caller.user) may not create applications: it needs one of the roles \(creators.sorted().joined(separator: ", ")) (or admin)"
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
