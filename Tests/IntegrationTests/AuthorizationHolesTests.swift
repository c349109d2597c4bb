import Access
import EventLog
import Foundation
import Orchestration
import PipelineEngine
import Pipelines
import Testing

/// Paths that used to go around application permissions: child pipelines, deleted applications,
/// applications made by saving a pipeline, and OIDC users named like Topsail's own accounts.
@Suite("Authorization: no path goes around it", .serialized, .timeLimit(.minutes(3)))
struct AuthorizationHolesTests {
    typealias Engine = EngineTests.Engine

    static func token(_ db: TestDatabase, _ user: String, roles: [String]) async throws -> String {
        try await Identities(store: db.store).issue(user: user, name: "t", roles: roles, metadata: EventMetadata(source: "test")).token
    }

    static func saveApplication(_ db: TestDatabase, _ name: String, _ permissions: JSONValue) async throws {
        try await ApplicationStore(store: db.store).documents.save(
            ["name": .string(name), "permissions": permissions], id: name, metadata: EventMetadata(source: "test"))
    }

    static func call(_ method: String, _ url: String, _ body: String?, _ token: String) async throws -> APITests.Reply {
        try await APITests.call(method, url, body: body, token: token)
    }

    @Test("a child pipeline stage runs as its parent's trigger identity: refused on save (400 naming the stage) and, saved before, TERMINAL when it runs")
    func childPipelines() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            try await Self.saveApplication(db, "vault", ["READ": ["vault-team"], "EXECUTE": ["vault-team"], "WRITE": ["vault-team"]])
            try await PipelineConfigStore(store: db.store).save(PipelineConfig(json: [
                "id": "secret", "application": "vault", "name": "open-the-vault", "stages": [["refId": "1", "type": "noop"]],
            ]), metadata: EventMetadata(source: "test"))
            let mallory = try await Self.token(db, "mallory", roles: [])
            let insider = try await Self.token(db, "insider", roles: ["vault-team"])
            try await APIContractTests.answering(engine)

            let parent = #"{"id": "heist", "application": "mine", "name": "heist", "stages": [{"refId": "c", "type": "pipeline", "application": "vault", "pipeline": "secret"}]}"#
            let refused = try await Self.call("POST", engine.api + "/pipelines", parent, mallory)
            #expect(refused.status == 400, "\(refused.json)")
            #expect(refused.json["problems"]?.arrayValue?.first?["stage"] == "c" && refused.json["problems"]?.arrayValue?.first?["path"] == "stages[0].pipeline", "\(refused.json)")
            #expect(refused.json["message"]?.stringValue?.contains("mallory may not EXECUTE application vault") == true, "\(refused.json)")
            // Someone with EXECUTE on the child's application may save it.
            let allowed = try await Self.call("POST", engine.api + "/pipelines", parent.replacingOccurrences(of: "heist", with: "legit"), insider)
            #expect(allowed.status == 200, "\(allowed.json)")

            // A pipeline saved before the rule (straight into the log) and triggered by mallory:
            // the stage refuses to start the child.
            try await PipelineConfigStore(store: db.store).save(PipelineConfig(json: try JSONDecoder().decode(JSONValue.self, from: Data(parent.utf8)).objectValue ?? [:]), metadata: EventMetadata(source: "test"))
            let triggered = try await Self.call("POST", engine.api + "/pipelines/mine/heist", "{}", mallory)
            #expect(triggered.status == 202, "\(triggered.json)")
            let id = try #require(triggered.json["id"]?.stringValue)
            let state = try await engine.finished(id)
            #expect(state.status == .terminal)
            #expect(state.stage("c").status == .terminal)
            #expect(state.stage("c").outputs["error"]?.stringValue?.contains("not permitted to start pipeline secret: mallory may not EXECUTE application vault") == true,
                    "\(state.stage("c").outputs)")
            #expect(state.trigger["authentication"]?["user"] == "mallory")
            // No execution of the vault's pipeline exists.
            var vaultRuns = 0
            for try await _ in try await db.client.query(
                "SELECT 1 FROM events WHERE event_type = 'execution.triggered' AND payload->'pipeline'->>'application' = 'vault'",
                logger: TestEnvironment.logger).decode(Int.self) { vaultRuns += 1 }
            #expect(vaultRuns == 0)

            // Triggered by the insider, the same pipeline starts the child as the insider.
            let second = try await Self.call("POST", engine.api + "/pipelines/mine/legit", #"{"authentication": {"user": "forged", "roles": ["admin"]}}"#, insider)
            let run = try await engine.finished(try #require(second.json["id"]?.stringValue))
            #expect(run.status == .succeeded, "\(run.stage("c").outputs)")
            #expect(run.trigger["authentication"] == ["user": "insider", "roles": ["vault-team"]], "a client cannot set the identity")
            let child = try await engine.repository.load(try #require(run.stage("c").outputs["executionId"]?.stringValue))
            #expect(child.trigger["authentication"]?["user"] == "insider")
        }
    }

    @Test("a deleted application keeps its permissions; re-creating it, or saving a pipeline into an application that does not exist, takes the right to create it")
    func deletedAndMissingApplications() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db, arguments: ["--application-creator-role", "creators"])
            defer { engine.process.terminate() }
            try await Self.saveApplication(db, "locked", ["READ": ["team"], "WRITE": ["team"], "EXECUTE": ["team"]])
            let team = try await Self.token(db, "tess", roles: ["team", "creators"])
            let outsider = try await Self.token(db, "otto", roles: ["creators"])
            let nobody = try await Self.token(db, "nora", roles: [])
            let admin = try await APIContractTests.admin(db)
            try await APIContractTests.answering(engine)
            let pipeline = #"{"id": "lp", "application": "locked", "name": "ship", "stages": [{"refId": "1", "type": "manualJudgment"}]}"#
            #expect(try await Self.call("POST", engine.api + "/pipelines", pipeline, team).status == 200)
            let triggered = try await Self.call("POST", engine.api + "/pipelines/locked/ship", "{}", team)
            let execution = try #require(triggered.json["id"]?.stringValue)
            #expect(try await Self.call("DELETE", engine.api + "/applications/locked", nil, team).status == 200)

            // Everything that still names the application is governed by its last permissions.
            let read = try await Self.call("GET", engine.api + "/pipelines/\(execution)", nil, outsider)
            #expect(read.status == 403 && read.json["message"]?.stringValue?.contains("the application is deleted") == true, "\(read.json)")
            #expect(try await Self.call("PUT", engine.api + "/pipelines/\(execution)/cancel", nil, outsider).status == 403)
            #expect(try await Self.call("POST", engine.api + "/pipelines/locked/ship", "{}", outsider).status == 403)
            #expect(try await Self.call("GET", engine.api + "/applications/locked/pipelineConfigs", nil, outsider).status == 403)
            #expect(try await Self.call("GET", engine.api + "/pipelines/\(execution)", nil, team).status == 200)
            // Re-creating it: not by a creator without WRITE under the old permissions, nor by
            // someone who may not create applications; yes by its team (creators) and admins.
            let recreate = #"{"name": "locked"}"#
            let stolen = try await Self.call("POST", engine.api + "/applications", recreate, outsider)
            #expect(stolen.status == 403, "\(stolen.json)")
            #expect(try await Self.call("POST", engine.api + "/applications", recreate, nobody).status == 403)
            #expect(try await Self.call("GET", engine.api + "/pipelines/\(execution)", nil, outsider).status == 403, "nothing opened up")
            let back = try await Self.call("POST", engine.api + "/applications", #"{"name": "locked", "permissions": {"READ": ["team"], "WRITE": ["team"]}}"#, team)
            #expect(back.status == 200, "\(back.json)")
            #expect(try await Self.call("POST", engine.api + "/applications", #"{"name": "other"}"#, admin).status == 200)

            // Saving a pipeline into an application that does not exist creates it: creators only.
            let fresh = #"{"application": "brand-new", "name": "p", "stages": [{"refId": "1", "type": "noop"}]}"#
            let denied = try await Self.call("POST", engine.api + "/pipelines", fresh, nobody)
            #expect(denied.status == 403 && denied.json["message"]?.stringValue?.contains("does not exist") == true, "\(denied.json)")
            #expect(try await Self.call("POST", engine.api + "/pipelines", fresh, outsider).status == 200)
        }
    }
}
