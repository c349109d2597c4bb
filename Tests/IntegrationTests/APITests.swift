import Access
import EventLog
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Orchestration
import PipelineEngine
import Pipelines
import Testing

/// The HTTP API of a `topsail all` process, over real HTTP.
@Suite("HTTP API: executions", .serialized, .timeLimit(.minutes(5)))
struct APITests {
    typealias Engine = EngineTests.Engine

    struct Reply {
        var status: Int
        var json: JSONValue
        var headers: [String: String] = [:]
    }

    /// The token `call` sends, for the test running now.
    @TaskLocal static var token: String?

    /// A test database and, for the whole body, a token of user "ana" with `roles`.
    static func authenticated(roles: [String] = [], _ body: @Sendable (TestDatabase) async throws -> Void) async throws {
        try await TestDatabase.with { db in
            let issued = try await Identities(store: db.store).issue(user: "ana", name: "tests", roles: roles, metadata: EventMetadata(source: "test"))
            try await $token.withValue(issued.token) { try await body(db) }
        }
    }

    /// A session that neither stores nor sends cookies: tests that run at once talk to many
    /// engines on 127.0.0.1, and cookies are per host, not per port.
    static let session = URLSession(configuration: cookieless)

    static var cookieless: URLSessionConfiguration {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpCookieStorage = nil
        configuration.httpShouldSetCookies = false
        configuration.httpCookieAcceptPolicy = .never
        return configuration
    }

    static func call(_ method: String, _ url: String, body: String? = nil, token: String? = Self.token, headers: [String: String] = [:]) async throws -> Reply {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        // Cookies are per host, not per port: a session one engine set would ride along to every
        // other engine on 127.0.0.1. A test that wants a cookie sends it as a header.
        request.httpShouldHandleCookies = false
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        if let body {
            request.httpBody = Data(body.utf8)
            if request.value(forHTTPHeaderField: "Content-Type") == nil { request.setValue("application/json", forHTTPHeaderField: "Content-Type") }
        }
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        let (data, response) = try await Self.session.data(for: request)
        let json = (try? JSONDecoder().decode(JSONValue.self, from: data)) ?? .string(String(decoding: data, as: UTF8.self))
        let http = response as? HTTPURLResponse
        var headers: [String: String] = [:]
        for (name, value) in http?.allHeaderFields ?? [:] { headers[String(describing: name).lowercased()] = String(describing: value) }
        return Reply(status: http?.statusCode ?? 0, json: json, headers: headers)
    }

    @Test("trigger a saved pipeline, answer its manual judgment and read it back, all through the API")
    func triggerJudgeAndRead() async throws {
        try await APITests.authenticated { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            try await eventually("the API to answer") { (try? await Self.call("GET", engine.api + "/health"))?.status == 200 }
            try await PipelineConfigStore(store: db.store).save(PipelineConfig(json: [
                "id": "deploy-1", "application": "shop", "name": "deploy", "limitConcurrent": false,
                "parameterConfig": [["name": "version", "required": true]],
                "stages": [
                    ["refId": "approve", "type": "manualJudgment", "judgmentInputs": [["value": "ship"]]],
                    EngineTests.script("go", "echo shipping ${parameters.version}", after: ["approve"]),
                ],
            ]), metadata: EventMetadata(source: "test"))

            let missing = try await Self.call("POST", engine.api + "/pipelines/shop/deploy", body: "{}")
            #expect(missing.status == 400 && missing.json["message"] == "missing required parameters: version", "\(missing.json)")
            let unknown = try await Self.call("POST", engine.api + "/pipelines/shop/nothing", body: "{}")
            #expect(unknown.status == 404 && unknown.json["error"] == "not_found")
            // By name, then by id.
            let triggered = try await Self.call("POST", engine.api + "/pipelines/shop/deploy", body: #"{"parameters": {"version": "1.2"}}"#)
            #expect(triggered.status == 202, "\(triggered.json)")
            let id = try #require(triggered.json["id"]?.stringValue)
            #expect(triggered.json["ref"] == .string("/pipelines/\(id)"))
            let byID = try await Self.call("POST", engine.api + "/pipelines/shop/deploy-1", body: #"{"parameters": {"version": "2"}}"#)
            #expect(byID.status == 202)

            try await engine.until("the judgment to wait") { try await engine.repository.load(id).stage("approve").status == .running }
            let wrong = try await Self.call("PATCH", engine.api + "/pipelines/\(id)/stages/approve", body: #"{"judgmentStatus": "continue", "judgmentInput": "nope"}"#)
            #expect(wrong.status == 409 && wrong.json["message"]?.stringValue?.contains("not one of the stage's judgment inputs") == true, "\(wrong.json)")
            let judged = try await Self.call("PATCH", engine.api + "/pipelines/\(id)/stages/approve", body: #"{"judgmentStatus": "continue", "judgmentInput": "ship"}"#)
            #expect(judged.status == 200, "\(judged.json)")
            _ = try await engine.finished(id)
            let execution = try await Self.call("GET", engine.api + "/pipelines/\(id)")
            #expect(execution.status == 200)
            #expect(execution.json["status"] == "SUCCEEDED")
            #expect(execution.json["parameters"]?["version"] == "1.2")
            #expect(execution.json["buildTime"] != nil && execution.json["endTime"] != nil)
            let stages = execution.json["stages"]?.arrayValue ?? []
            #expect(stages.first?["outputs"]?["lastModifiedBy"] == "ana")
            #expect(stages.last?["outputs"]?["stdout"] == "shipping 1.2\n")

            // Control of a completed execution is a conflict; of an unknown one, not found.
            let late = try await Self.call("PUT", engine.api + "/pipelines/\(id)/cancel")
            #expect(late.status == 409 && late.json["message"] == .string("cannot cancel execution \(id): it is SUCCEEDED"))
            #expect(try await Self.call("GET", engine.api + "/pipelines/nope").status == 404)
            let other = try #require(byID.json["id"]?.stringValue)
            try await engine.until("the second execution to wait") { try await engine.repository.load(other).stage("approve").status == .running }
            let canceled = try await Self.call("PUT", engine.api + "/pipelines/\(other)/cancel?reason=enough")
            #expect(canceled.status == 200 && canceled.json["status"] == "CANCELED", "\(canceled.json)")

            // Listings come from the read model.
            try await engine.until("both executions listed") {
                let listed = try await Self.call("GET", engine.api + "/applications/shop/pipelines?statuses=SUCCEEDED,CANCELED")
                return listed.json.arrayValue?.count == 2
            }
            let succeeded = try await Self.call("GET", engine.api + "/executions?pipelineConfigIds=deploy-1&statuses=succeeded&limit=5")
            #expect(succeeded.json.arrayValue?.map { $0["id"] } == [.string(id)])
            let byIDs = try await Self.call("GET", engine.api + "/executions?executionIds=\(id),\(other)")
            #expect(byIDs.json.arrayValue?.count == 2)
        }
    }

    @Test("errors are JSON with error, message and status: malformed bodies, bad queries, unknown routes, bodies over the limit")
    func errors() async throws {
        try await APITests.authenticated { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            try await eventually("the API to answer") { (try? await Self.call("GET", engine.api + "/ready"))?.status == 200 }
            let id = try await engine.run(EngineTests.pipeline([["refId": "j", "type": "manualJudgment"]]))
            let malformed = try await Self.call("PATCH", engine.api + "/pipelines/\(id)/stages/j", body: "{not json")
            #expect(malformed.status == 400)
            #expect(malformed.json == ["error": "bad_request", "message": "the request body must be a JSON object", "status": 400])
            let noStatus = try await Self.call("PATCH", engine.api + "/pipelines/\(id)/stages/j", body: "{}")
            #expect(noStatus.status == 400 && noStatus.json["message"] == "give judgmentStatus (continue or stop), or skipRemainingWait: true")
            let badLimit = try await Self.call("GET", engine.api + "/executions?limit=0")
            #expect(badLimit.status == 400 && badLimit.json["message"] == "limit must be 1…1000, got '0'")
            let badStatus = try await Self.call("GET", engine.api + "/executions?statuses=DONE")
            #expect(badStatus.status == 400 && badStatus.json["message"]?.stringValue?.hasPrefix("unknown status 'DONE'") == true)
            let route = try await Self.call("GET", engine.api + "/no/such/thing")
            #expect(route.status == 404 && route.json["error"] == "not_found" && route.json["status"] == 404, "\(route.json)")
            let huge = String(repeating: "x", count: 2 << 20)
            let tooLarge = try await Self.call("PATCH", engine.api + "/pipelines/\(id)/stages/j", body: #"{"judgmentInput": "\#(huge)"}"#)
            #expect(tooLarge.status == 413 && tooLarge.json["error"] == "payload_too_large", "\(tooLarge.status) \(tooLarge.json)")
        }
    }
}

@Suite("HTTP API: saved pipelines", .serialized, .timeLimit(.minutes(5)))
struct PipelineConfigAPITests {
    typealias Engine = EngineTests.Engine
    typealias API = APITests

    @Test("save with optimistic concurrency, history, listing per application, delete; invalid pipelines name the path")
    func saveHistoryListDelete() async throws {
        try await APITests.authenticated { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            try await eventually("the API to answer") { (try? await API.call("GET", engine.api + "/health"))?.status == 200 }
            let invalid = try await API.call("POST", engine.api + "/pipelines", body: """
                {"application": "shop", "name": "loop", "stages": [
                  {"refId": "a", "type": "noop", "requisiteStageRefIds": ["b"]}, {"refId": "b", "type": "noop", "requisiteStageRefIds": ["a"]}]}
                """)
            #expect(invalid.status == 400 && invalid.json["error"] == "invalid_pipeline", "\(invalid.json)")
            #expect(invalid.json["problems"]?.arrayValue?.first?["path"]?.stringValue?.hasPrefix("stages[") == true, "\(invalid.json)")

            let pipeline = #"{"id": "p1", "application": "shop", "name": "build", "stages": [{"refId": "1", "type": "noop"}]}"#
            let first = try await API.call("POST", engine.api + "/pipelines?basedOn=0", body: pipeline)
            #expect(first.status == 200 && first.json["version"] == 1, "\(first.json)")
            let second = try await API.call("POST", engine.api + "/pipelines?basedOn=1", body: pipeline)
            #expect(second.json["version"] == 2)
            // Another client saves from the copy it read at version 1.
            let stale = try await API.call("POST", engine.api + "/pipelines?basedOn=1", body: pipeline)
            #expect(stale.status == 409, "\(stale.json)")
            #expect(stale.json["message"]?.stringValue?.hasPrefix("pipeline p1 is at version 2, not 1") == true)
            let forced = try await API.call("POST", engine.api + "/pipelines?basedOn=1&force=true", body: pipeline)
            #expect(forced.status == 200 && forced.json["version"] == 3)
            let history = try await API.call("GET", engine.api + "/pipelineConfigs/p1/history")
            #expect(history.json.arrayValue?.map { $0["version"] } == [3, 2, 1])
            #expect(history.json.arrayValue?.first?["actor"] == "ana")

            try await engine.until("the application's listing to show it") {
                try await API.call("GET", engine.api + "/applications/shop/pipelineConfigs").json.arrayValue?.map { $0["name"] } == ["build"]
            }
            let byName = try await API.call("GET", engine.api + "/applications/shop/pipelineConfigs/build")
            #expect(byName.status == 200 && byName.json["id"] == "p1")

            let deleted = try await API.call("DELETE", engine.api + "/pipelines/shop/build")
            #expect(deleted.status == 200 && deleted.json["deleted"] == true, "\(deleted.json)")
            let triggered = try await API.call("POST", engine.api + "/pipelines/shop/build", body: "{}")
            #expect(triggered.status == 404, "a deleted pipeline cannot be triggered")
            let kept = try await API.call("GET", engine.api + "/pipelineConfigs/p1/history")
            #expect(kept.json.arrayValue?.first?["deleted"] == true && kept.json.arrayValue?.count == 4, "deleting keeps the history")
            try await engine.until("the listing to drop it") {
                try await API.call("GET", engine.api + "/applications/shop/pipelineConfigs").json.arrayValue?.isEmpty == true
            }
            #expect(try await API.call("DELETE", engine.api + "/pipelines/shop/build").status == 404)
        }
    }
}

@Suite("HTTP API: applications", .serialized, .timeLimit(.minutes(5)))
struct ApplicationAPITests {
    typealias Engine = EngineTests.Engine
    typealias API = APITests

    @Test("create, update with optimistic concurrency, get, list, history, delete; invalid applications name the field")
    func lifecycle() async throws {
        try await APITests.authenticated(roles: ["devs"]) { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            try await eventually("the API to answer") { (try? await API.call("GET", engine.api + "/health"))?.status == 200 }
            let badName = try await API.call("POST", engine.api + "/applications", body: #"{"name": "Web Shop"}"#)
            #expect(badName.status == 400 && badName.json["problems"]?.arrayValue?.first?["path"] == "name", "\(badName.json)")
            let badEmail = try await API.call("POST", engine.api + "/applications", body: #"{"name": "web", "email": "nobody"}"#)
            #expect(badEmail.status == 400 && badEmail.json["problems"]?.arrayValue?.first?["path"] == "email")

            let created = try await API.call("POST", engine.api + "/applications?basedOn=0",
                                             body: #"{"name": "web", "email": "team@example.com", "description": "the shop", "permissions": {"WRITE": ["devs"]}}"#)
            #expect(created.status == 200 && created.json["version"] == 1, "\(created.json)")
            let again = try await API.call("POST", engine.api + "/applications?basedOn=0", body: #"{"name": "web"}"#)
            #expect(again.status == 409, "creating an application that exists, based on nothing")
            let updated = try await API.call("POST", engine.api + "/applications?basedOn=1", body: #"{"name": "web", "email": "ops@example.com"}"#)
            #expect(updated.json["version"] == 2)
            let read = try await API.call("GET", engine.api + "/applications/web")
            #expect(read.json["email"] == "ops@example.com" && read.json["version"] == 2)
            #expect(try await API.call("GET", engine.api + "/applications/nope").status == 404)
            try await engine.until("the listing to show it") {
                try await API.call("GET", engine.api + "/applications").json.arrayValue?.map { $0["name"] } == ["web"]
            }
            let history = try await API.call("GET", engine.api + "/applications/web/history")
            #expect(history.json.arrayValue?.map { $0["version"] } == [2, 1])
            #expect(history.json.arrayValue?.last?["document"]?["description"] == "the shop")
            let deleted = try await API.call("DELETE", engine.api + "/applications/web")
            #expect(deleted.status == 200)
            #expect(try await API.call("GET", engine.api + "/applications/web").status == 404)
            #expect(try await API.call("GET", engine.api + "/applications/web/history").json.arrayValue?.count == 3, "deleting keeps the history")
            try await engine.until("the listing to drop it") { try await API.call("GET", engine.api + "/applications").json.arrayValue?.isEmpty == true }
        }
    }
}

@Suite("Audit", .serialized, .timeLimit(.minutes(5)))
struct AuditTests {
    typealias Engine = EngineTests.Engine
    typealias API = APITests

    @Test("every change is an event with its actor: filter by actor, application, type and time, page, export JSON lines")
    func audit() async throws {
        try await APITests.authenticated(roles: ["admin"]) { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            try await eventually("the API to answer") { (try? await API.call("GET", engine.api + "/health"))?.status == 200 }
            let began = Date().addingTimeInterval(-1)
            _ = try await API.call("POST", engine.api + "/applications", body: #"{"name": "shop"}"#)
            _ = try await API.call("POST", engine.api + "/pipelines", body: #"{"id": "a1", "application": "shop", "name": "gate", "limitConcurrent": false, "stages": [{"refId": "j", "type": "manualJudgment"}]}"#)
            _ = try await API.call("POST", engine.api + "/pipelines", body: #"{"id": "b1", "application": "other", "name": "x", "stages": [{"refId": "1", "type": "noop"}]}"#)
            let triggered = try await API.call("POST", engine.api + "/pipelines/shop/gate", body: "{}")
            let id = try #require(triggered.json["id"]?.stringValue)
            try await engine.until("the judgment to wait") { try await engine.repository.load(id).stage("j").status == .running }
            _ = try await API.call("PATCH", engine.api + "/pipelines/\(id)/stages/j", body: #"{"judgmentStatus": "continue"}"#)
            _ = try await engine.finished(id)

            // Everything the caller did, and nothing the engine did by itself. The audit log reads
            // below the oldest open writer on the server (other tests' too), so the last event
            // may take a moment to be readable.
            var all = APITests.Reply(status: 0, json: .null)
            try await engine.until("the judgment to be readable in the audit log") {
                all = try await API.call("GET", engine.api + "/audit?actor=ana")
                return all.json["events"]?.arrayValue?.count == 5
            }
            let types = all.json["events"]?.arrayValue?.compactMap { $0["type"]?.stringValue } ?? []
            #expect(types == ["application.saved", "pipeline.saved", "pipeline.saved", "execution.triggered", "execution.stage.completed"], "\(types)")
            #expect(all.json["next"] == .null)
            try await engine.until("the read model to know the execution's application") {
                let shop = try await API.call("GET", engine.api + "/audit?application=shop")
                return shop.json["events"]?.arrayValue?.count == 4
            }
            let system = try await API.call("GET", engine.api + "/audit?application=shop&includeSystem=true&type=execution.*")
            #expect((system.json["events"]?.arrayValue?.count ?? 0) > 2, "the engine's own steps with includeSystem")
            let saves = try await API.call("GET", engine.api + "/audit?type=pipeline.saved")
            #expect(saves.json["events"]?.arrayValue?.map { $0["stream"] } == ["pipeline-a1", "pipeline-b1"])
            let first = try await API.call("GET", engine.api + "/audit?actor=ana&limit=2")
            let next = try #require(first.json["next"]?.doubleValue)
            let second = try await API.call("GET", engine.api + "/audit?actor=ana&limit=2&after=\(Int(next))")
            #expect(second.json["events"]?.arrayValue?.first?["type"] == "pipeline.saved")
            let future = try await API.call("GET", engine.api + "/audit?since=2999-01-01T00:00:00Z")
            #expect(future.json["events"]?.arrayValue?.isEmpty == true)
            let bad = try await API.call("GET", engine.api + "/audit?since=yesterday")
            #expect(bad.status == 400)

            let exported = try await CLITests.run(["audit", "--actor", "ana", "--since", ISO8601DateFormatter().string(from: began)],
                                                  environment: ["TOPSAIL_DATABASE_URL": db.url])
            #expect(exported.status == 0, "\(exported.stderr)")
            let lines = exported.stdout.split(separator: "\n")
            #expect(lines.count == 5)
            #expect(lines.allSatisfy { (try? JSONText(String($0)).decode(JSONValue.self))?["actor"] == "ana" })
        }
    }
}

@Suite("HTTP API: authentication", .serialized, .timeLimit(.minutes(5)))
struct AuthenticationTests {
    typealias Engine = EngineTests.Engine
    typealias API = APITests

    @Test("every route but the health checks needs a valid token; tokens are created, listed and revoked with the CLI")
    func tokens() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            let env = ["TOPSAIL_DATABASE_URL": db.url]
            try await eventually("the API to answer") { (try? await API.call("GET", engine.api + "/health"))?.status == 200 }
            #expect(try await API.call("GET", engine.api + "/ready").status == 200, "the health checks are open")

            let anonymous = try await API.call("GET", engine.api + "/executions")
            #expect(anonymous.status == 401 && anonymous.json["error"] == "unauthenticated", "\(anonymous.json)")
            #expect(anonymous.json["message"]?.stringValue?.contains("Authorization: Bearer") == true)
            for wrong in ["nonsense", "tsk_nothere_secret", "tsk__"] {
                let reply = try await API.$token.withValue(wrong) { try await API.call("GET", engine.api + "/executions") }
                #expect(reply.status == 401, "token \(wrong)")
            }
            // Changing things without a token changes nothing.
            let refused = try await API.call("POST", engine.api + "/applications", body: #"{"name": "sneaky"}"#)
            #expect(refused.status == 401)
            #expect(try await ApplicationStore(store: db.store).documents.latest("sneaky") == nil)

            let bootstrap = try await CLITests.run(["tokens", "bootstrap"], environment: env)
            let adminToken = try #require(bootstrap.stdout.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) })
            #expect(adminToken.hasPrefix("tsk_"), "\(bootstrap.stdout)\(bootstrap.stderr)")
            let second = try await CLITests.run(["tokens", "bootstrap"], environment: env)
            #expect(second.stdout.contains("tokens exist already"))
            let created = try await CLITests.run(["tokens", "create", "--user", "ci-bot", "--name", "jenkins", "--roles", "deployers"], environment: env)
            let botToken = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(botToken.hasPrefix("tsk_") && created.stderr.contains("it is not shown again"), "\(created.stderr)")

            let saved = try await API.$token.withValue(botToken) {
                try await API.call("POST", engine.api + "/applications", body: #"{"name": "web"}"#)
            }
            #expect(saved.status == 200)
            let history = try await API.$token.withValue(adminToken) { try await API.call("GET", engine.api + "/applications/web/history") }
            #expect(history.json.arrayValue?.first?["actor"] == "ci-bot", "the token's user is the actor")

            let listed = try await CLITests.run(["tokens", "list"], environment: env)
            let botID = String(botToken.split(separator: "_")[1])
            #expect(listed.stdout.contains("\(botID)\tci-bot\tjenkins\t") && listed.stdout.contains("\tadmin\tbootstrap\t"), "\(listed.stdout)")
            let revoked = try await CLITests.run(["tokens", "revoke", botID], environment: env)
            #expect(revoked.status == 0, "\(revoked.stderr)")
            let after = try await API.$token.withValue(botToken) { try await API.call("GET", engine.api + "/applications") }
            #expect(after.status == 401, "a revoked token is refused at once")
            #expect(try await CLITests.run(["tokens", "list"], environment: env).stdout.contains("\(botID)\tci-bot\tjenkins\t") == true)
            let again = try await CLITests.run(["tokens", "revoke", botID], environment: env)
            #expect(again.status == 1 && again.stderr.contains("no active token"))
        }
    }
}

@Suite("HTTP API: authorization", .serialized, .timeLimit(.minutes(5)))
struct AuthorizationTests {
    typealias Engine = EngineTests.Engine
    typealias API = APITests

    struct Callers {
        let admin: String, developer: String, viewer: String, outsider: String
    }

    /// Each role against each kind of endpoint, allowed or refused; a refusal changes nothing.
    @Test("the permission matrix: admin, WRITE+EXECUTE, READ, no role; refusals are 403 and change nothing")
    func matrix() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            let identities = Identities(store: db.store)
            let metadata = EventMetadata(source: "test")
            let callers = Callers(
                admin: try await identities.issue(user: "root", name: nil, roles: ["admin"], metadata: metadata).token,
                developer: try await identities.issue(user: "dev", name: nil, roles: ["devs"], metadata: metadata).token,
                viewer: try await identities.issue(user: "eve", name: nil, roles: ["viewers"], metadata: metadata).token,
                outsider: try await identities.issue(user: "out", name: nil, roles: [], metadata: metadata).token)
            func call(_ token: String, _ method: String, _ path: String, _ body: String? = nil) async throws -> API.Reply {
                try await API.$token.withValue(token) { try await API.call(method, engine.api + path, body: body) }
            }
            try await eventually("the API to answer") { (try? await API.call("GET", engine.api + "/health"))?.status == 200 }
            #expect(try await call(callers.admin, "POST", "/applications", #"{"name": "web", "permissions": {"READ": ["viewers"], "WRITE": ["devs"], "EXECUTE": ["devs"]}}"#).status == 200)
            #expect(try await call(callers.admin, "POST", "/applications", #"{"name": "open"}"#).status == 200)
            let pipeline = #"{"id": "w1", "application": "web", "name": "ship", "limitConcurrent": false, "stages": [{"refId": "j", "type": "manualJudgment", "selectedStageRoles": ["approvers"]}]}"#
            let pipelineOpen = #"{"id": "o1", "application": "open", "name": "go", "limitConcurrent": false, "stages": [{"refId": "1", "type": "noop"}]}"#

            func eventCount() async throws -> Int {
                var count = 0
                for try await value in try await db.client.query("SELECT count(*)::int FROM events", logger: TestEnvironment.logger).decode(Int.self) { count = value }
                return count
            }

            // Saving pipelines: WRITE.
            for (token, status) in [(callers.outsider, 403), (callers.viewer, 403)] {
                let before = try await eventCount()
                let reply = try await call(token, "POST", "/pipelines", pipeline)
                #expect(reply.status == status, "\(reply.json)")
                #expect(reply.json["error"] == "forbidden")
                #expect(try await eventCount() == before, "a refused save changed the log")
            }
            let refusal = try await call(callers.viewer, "POST", "/pipelines", pipeline)
            #expect(refusal.json["message"] == "eve may not WRITE application web: it needs one of the roles devs")
            #expect(try await call(callers.developer, "POST", "/pipelines", pipeline).status == 200)
            #expect(try await call(callers.outsider, "POST", "/pipelines", pipelineOpen).status == 200, "an application without permissions is open")

            // Triggering: EXECUTE.
            #expect(try await call(callers.viewer, "POST", "/pipelines/web/ship", "{}").status == 403)
            #expect(try await call(callers.outsider, "POST", "/pipelines/web/ship", "{}").status == 403)
            let triggered = try await call(callers.developer, "POST", "/pipelines/web/ship", "{}")
            #expect(triggered.status == 202)
            let id = try #require(triggered.json["id"]?.stringValue)

            // Reading: READ (or WRITE/EXECUTE); listings leave out what the caller may not read.
            #expect(try await call(callers.viewer, "GET", "/pipelines/\(id)").status == 200)
            #expect(try await call(callers.developer, "GET", "/pipelines/\(id)").status == 200)
            #expect(try await call(callers.outsider, "GET", "/pipelines/\(id)").status == 403)
            #expect(try await call(callers.outsider, "GET", "/applications/web").status == 403)
            #expect(try await call(callers.outsider, "GET", "/applications/web/pipelineConfigs").status == 403)
            for path in ["/pipelines/\(id)/events", "/pipelines/\(id)/evaluateExpression?expression=x", "/applications/web/history",
                         "/pipelineConfigs/w1/history", "/applications/web/pipelines", "/applications/web/pipelineConfigs/ship"] {
                #expect(try await call(callers.outsider, "GET", path).status == 403, "outsider: \(path)")
                #expect(try await call(callers.viewer, "GET", path).status == 200, "viewer: \(path)")
            }
            #expect(try await call(callers.outsider, "POST", "/pipelines/\(id)/evaluateExpression", #"{"expression": "x"}"#).status == 403)
            try await engine.until("the outsider to see only the open application") {
                try await call(callers.outsider, "GET", "/applications").json.arrayValue?.compactMap { $0["name"]?.stringValue } == ["open"]
            }
            #expect(try await call(callers.viewer, "GET", "/applications").json.arrayValue?.count == 2)
            try await engine.until("the executions listing") {
                try await call(callers.admin, "GET", "/executions").json.arrayValue?.count == 1
            }
            #expect(try await call(callers.outsider, "GET", "/executions").json.arrayValue?.isEmpty == true, "reads are filtered")
            #expect(try await call(callers.viewer, "GET", "/executions").json.arrayValue?.count == 1)

            // Controlling and judging: EXECUTE, and the stage's selectedStageRoles for judgments.
            try await engine.until("the judgment to wait") { try await engine.repository.load(id).stage("j").status == .running }
            let beforeControl = try await eventCount()
            for (method, path, body) in [("PUT", "/pipelines/\(id)/pause", nil), ("PUT", "/pipelines/\(id)/cancel", nil), ("PUT", "/pipelines/\(id)/resume", nil),
                                         ("PUT", "/pipelines/\(id)/stages/j/restart", nil), ("PATCH", "/pipelines/\(id)/stages/j", #"{"skipRemainingWait": true}"#)] as [(String, String, String?)] {
                #expect(try await call(callers.viewer, method, path, body).status == 403, "viewer: \(method) \(path)")
            }
            #expect(try await eventCount() == beforeControl, "a refused control changed the log")
            let judgeBody = #"{"judgmentStatus": "continue"}"#
            let notApprover = try await call(callers.developer, "PATCH", "/pipelines/\(id)/stages/j", judgeBody)
            #expect(notApprover.status == 403 && notApprover.json["message"]?.stringValue?.contains("selectedStageRoles") == true, "\(notApprover.json)")
            #expect(try await engine.repository.load(id).stage("j").status == .running, "a refused judgment changed the stage")
            #expect(try await call(callers.admin, "PATCH", "/pipelines/\(id)/stages/j", judgeBody).status == 200)

            // Changing and deleting the application: WRITE; the audit log: admins (or READ on one application).
            #expect(try await call(callers.viewer, "POST", "/applications", #"{"name": "web"}"#).status == 403)
            #expect(try await call(callers.viewer, "DELETE", "/applications/web").status == 403)
            #expect(try await call(callers.developer, "DELETE", "/pipelines/web/ship").status == 200)
            #expect(try await call(callers.viewer, "GET", "/audit").status == 403)
            #expect(try await call(callers.viewer, "GET", "/audit?application=web").status == 200)
            #expect(try await call(callers.outsider, "GET", "/audit?application=web").status == 403)
            #expect(try await call(callers.admin, "GET", "/audit").status == 200)
        }
    }
}
