import Access
import API
import EventLog
import Foundation
import Logging
import PipelineEngine
import PostgresEventStore
import PostgresNIO
import Testing

/// Every route the API registers, with the access it declares, called by every kind of caller:
/// the matrix is generated from the route table, so a new route is in it from the day it is added.
@Suite("HTTP API: the permission matrix of every route", .serialized, .timeLimit(.minutes(5)))
struct PermissionMatrixTests {
    typealias Engine = EngineTests.Engine

    enum Caller: String, CaseIterable {
        case noToken = "no token", revoked = "revoked token", noRole = "no role", reader = "READ only", executor = "EXECUTE only"
        case owner = "owner role", admin
    }

    /// Whether `caller` may use a route declaring `access`: nil when it may, else the status it gets.
    static func refusal(_ caller: Caller, _ access: RouteAccess) -> Int? {
        if access == .open { return nil }
        // Deliveries need no token, but one that is sent must be valid.
        if access == .trigger { return caller == .revoked ? 401 : nil }
        if caller == .noToken || caller == .revoked { return 401 }
        switch access {
        case .open, .authenticated, .trigger: return nil
        case .admin: return caller == .admin ? nil : 403
        case .application(let permission):
            switch caller {
            case .admin, .owner: return nil
            case .reader: return permission == .read ? nil : 403
            case .executor: return permission == .write ? 403 : nil
            case .noRole, .noToken, .revoked: return 403
            }
        }
    }

    /// The routes of a server that is never started (the table needs no database).
    static func routeTable() async throws -> [RouteEntry] {
        let configuration = try TestEnvironment.database()
        let client = PostgresClient(configuration: configuration.clientConfiguration, backgroundLogger: TestEnvironment.logger)
        let repository = ExecutionRepository(store: PostgresEventStore(client: client, logger: TestEnvironment.logger), logger: TestEnvironment.logger)
        return try await APIServer(client: client, repository: repository, configuration: .init(), logger: TestEnvironment.logger).routeTable()
    }

    @Test("every route × admin, owner role, READ only, EXECUTE only, no role, no token, revoked token: allowed as declared, refused with 401/403 changing nothing")
    func everyRoute() async throws {
        let table = try await Self.routeTable()
        #expect(table.count >= 31, "the route table lost routes: \(table)")
        #expect(Set(table.map(\.description)).count == table.count, "a route is registered twice")
        try await TestDatabase.with { db in
            let engine = try Engine(db, arguments: ["--rate-limit", "10000", "--rate-burst", "10000"])
            defer { engine.process.terminate() }
            let identities = Identities(store: db.store)
            let metadata = EventMetadata(source: "test")
            func token(_ user: String, _ roles: [String]) async throws -> String {
                try await identities.issue(user: user, name: "matrix", roles: roles, metadata: metadata).token
            }
            var tokens: [Caller: String] = [
                .admin: try await token("root", ["admin"]), .owner: try await token("olga", ["owners"]), .reader: try await token("rita", ["readers"]),
                .executor: try await token("exa", ["executors"]), .noRole: try await token("nora", []),
            ]
            let revoked = try await identities.issue(user: "rev", name: "gone", roles: ["owners"], metadata: metadata)
            #expect(try await identities.revoke(id: revoked.id, metadata: metadata))
            tokens[.revoked] = revoked.token
            let ci = try await identities.issue(user: "ci", name: "theirs", metadata: metadata)
            try await APIContractTests.answering(engine)

            let permissions = #"{"READ": ["readers"], "WRITE": ["owners"], "EXECUTE": ["owners", "executors"]}"#
            let admin = try #require(tokens[.admin])
            #expect(try await APIContractTests.call("POST", engine.api + "/applications", #"{"name": "web", "permissions": \#(permissions)}"#, admin).status == 200)
            let pipeline = #"{"id": "w1", "application": "web", "name": "ship", "stages": [{"refId": "j", "type": "manualJudgment"}]}"#
            #expect(try await APIContractTests.call("POST", engine.api + "/pipelines", pipeline, admin).status == 200)
            let triggered = try await APIContractTests.call("POST", engine.api + "/pipelines/web/ship", "{}", admin)
            let execution = try #require(triggered.json["id"]?.stringValue)
            try await engine.until("the judgment to wait") { try await engine.repository.load(execution).stage("j").status == .running }

            // A concrete request for each route: its parameters filled in, a body where it takes one.
            func request(_ route: RouteEntry) throws -> (path: String, body: String?) {
                let executionRoute = route.path.hasPrefix("/pipelines/:id") && route.path != "/pipelines/:id/:pipeline"
                var path = route.path
                    .replacingOccurrences(of: ":app", with: "web").replacingOccurrences(of: ":pipeline", with: "ship")
                    .replacingOccurrences(of: ":stage", with: "j")
                switch route.path {
                case "/pipelines/:id/:pipeline": path = "/pipelines/web/ship"
                case "/pipelineConfigs/:id/history": path = "/pipelineConfigs/w1/history"
                case "/tokens/:id": path = "/tokens/\(ci.id)"
                case "/webhooks/:type/:source": path = "/webhooks/webhook/matrix"
                case "/webhooks/git/:provider": path = "/webhooks/git/github"
                case "/webhooks/cdevents/:source": path = "/webhooks/cdevents/matrix"
                case "/ci/builds/:master": path = "/ci/builds/matrix"
                case "/applications/:app/clusters/:account/:cluster": path = "/applications/web/clusters/nosuch/web"
                case "/instances/:account/:region/:id": path = "/instances/nosuch/local/i-1"
                case "/tasks/:id": path = "/tasks/\(execution)"
                case "/ui/assets/:file": path = "/ui/assets/app.css"
                default: if executionRoute { path = path.replacingOccurrences(of: ":id", with: execution) }
                }
                guard !path.contains(":") else { throw SetupError("the matrix has no example for a parameter of \(route): add one") }
                switch (route.method, route.path) {
                case ("GET", "/audit"): return (path + "?application=web", nil)
                case ("GET", "/ui/stream"): return (path + "?follow=false", nil)
                case ("GET", "/pipelines/:id/evaluateExpression"): return (path + "?expression=x", nil)
                case ("POST", "/pipelines/:id/evaluateExpression"): return (path, #"{"expression": "x"}"#)
                case ("POST", "/pipelines"): return (path, pipeline)
                case ("POST", "/applications"): return (path, #"{"name": "web", "permissions": \#(permissions)}"#)
                case ("POST", "/tokens"): return (path, "{}")
                case ("POST", "/serviceAccounts"): return (path, #"{"name": "svc", "roles": ["owners"]}"#)
                case ("POST", "/pipelines/:id/:pipeline"): return (path, "{}")
                case ("POST", "/webhooks/git/:provider"): return (path, #"{"ref": "refs/heads/main", "repository": {"name": "r", "owner": {"login": "o"}}}"#)
                case ("POST", "/webhooks/cdevents/:source"):
                    return (path, #"{"specversion": "1.0", "id": "m-1", "type": "dev.cdevents.artifact.packaged.0.2.0", "source": "/ci", "data": {}}"#)
                case ("POST", "/ci/builds/:master"): return (path, #"{"job": "j", "number": 1, "result": "SUCCESS"}"#)
                case ("PATCH", _): return (path, #"{"judgmentStatus": "continue"}"#)
                default: return (path, route.method == "GET" || route.method == "DELETE" ? nil : "{}")
                }
            }
            // What a request appended carries its id (X-Request-Id) as causation id; the engine
            // appends on its own meanwhile (the executions allowed calls started).
            func appended(by reply: APITests.Reply) async throws -> Int {
                guard let request = reply.headers["x-request-id"] else { return 0 }
                var count = 0
                for try await value in try await db.client.query("SELECT count(*)::int FROM events WHERE metadata->>'causationId' = \(request)",
                                                                 logger: TestEnvironment.logger).decode(Int.self) { count = value }
                return count
            }

            // Reads first, removals last, so that what a route needs is still there when the
            // refusals are checked; within a route, the least privileged caller first.
            let order = ["GET": 0, "POST": 1, "PUT": 2, "PATCH": 3, "DELETE": 4]
            var checked = 0
            for route in table.sorted(by: { (order[$0.method] ?? 5, $0.path) < (order[$1.method] ?? 5, $1.path) }) {
                let (path, body) = try request(route)
                for caller in [Caller.noToken, .revoked, .noRole, .reader, .executor, .owner, .admin] {
                    let reply = try await APIContractTests.call(route.method, engine.api + path, body, tokens[caller])
                    checked += 1
                    #expect(reply.headers["x-request-id"] != nil, "\(route) as \(caller.rawValue): no X-Request-Id")
                    if let refused = Self.refusal(caller, route.access) {
                        #expect(reply.status == refused, "\(route) as \(caller.rawValue): \(reply.status) \(reply.json), expected \(refused)")
                        #expect(reply.json["message"]?.stringValue?.isEmpty == false, "\(route) as \(caller.rawValue): a refusal names why")
                        #expect(try await appended(by: reply) == 0, "\(route) as \(caller.rawValue): a refusal changed the log")
                    } else {
                        #expect(![401, 403].contains(reply.status), "\(route) as \(caller.rawValue): refused (\(reply.status) \(reply.json)) though it declares \(route.access)")
                        #expect(reply.status < 500, "\(route) as \(caller.rawValue): \(reply.status) \(reply.json)")
                    }
                }
            }
            print("permission matrix: \(table.count) routes × \(Caller.allCases.count) callers = \(checked) calls")
        }
    }
}
