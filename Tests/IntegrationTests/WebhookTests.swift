import EventLog
import Foundation
import Orchestration
import PipelineEngine
import Pipelines
import Testing

/// Webhook stages run by a `topsail all` process against a real HTTP server in the test.
@Suite("Engine: webhook stages", .serialized, .timeLimit(.minutes(5)))
struct WebhookTests {
    typealias Engine = EngineTests.Engine

    static func webhook(_ ref: String, _ url: String, after: [String] = [], _ extra: [String: JSONValue] = [:]) -> JSONValue {
        var stage: [String: JSONValue] = ["refId": .string(ref), "type": "webhook", "url": .string(url),
                                          "requisiteStageRefIds": .array(after.map(JSONValue.string)), "backoffPeriodMs": 100]
        stage.merge(extra) { $1 }
        return .object(stage)
    }

    static func progressCount(_ engine: Engine, _ id: String, _ ref: String) async throws -> Int {
        try await engine.repository.events(of: id).filter {
            if case .stageProgressed(ref, _, _, _, _) = $0 { true } else { false }
        }.count
    }

    @Test("a webhook sends its evaluated payload and headers and records the response")
    func fireAndForget() async throws {
        try await ScriptedHTTPServer.with { server in
            try await TestDatabase.with { db in
                let engine = try Engine(db)
                defer { engine.process.terminate() }
                server.on("/notify", .json(#"{"accepted": true, "ticket": 7}"#, status: 202))
                let id = try await engine.run(EngineTests.pipeline([
                    Self.webhook("1", server.base + "/notify", [
                        "method": "PUT", "payload": ["execution": "${execution.id}", "kind": "${trigger.type}", "n": 3],
                        "customHeaders": ["X-Topsail-Test": "${execution.application}", "X-List": ["a", "b"]],
                    ]),
                    EngineTests.script("2", "echo ticket ${#stage('1').outputs.webhook.body.ticket}", after: ["1"]),
                ]))
                let state = try await engine.finished(id)
                #expect(state.status == .succeeded)
                let request = try #require(server.received("/notify").first)
                #expect(server.received("/notify").count == 1)
                #expect(request.method == "PUT")
                #expect(request.headers["x-topsail-test"] == "test")
                #expect(request.headers["content-type"] == "application/json")
                let body = try JSONText(request.body).decode(JSONValue.self)
                #expect(body == ["execution": .string(id), "kind": "manual", "n": 3])
                let webhook = state.stage("1").outputs["webhook"]
                #expect(webhook?["statusCodeValue"] == 202)
                #expect(webhook?["statusCode"] == "ACCEPTED")
                #expect(webhook?["body"]?["ticket"] == 7)
                #expect(state.stage("2").outputs["stdout"] == "ticket 7\n")
            }
        }
    }

    @Test("waitForCompletion polls the status URL (getMethod, locationHeader, webhookResponse) through durable timers")
    func monitorsStatus() async throws {
        try await ScriptedHTTPServer.with { server in
            try await TestDatabase.with { db in
                let engine = try Engine(db)
                defer { engine.process.terminate() }
                let running = ScriptedHTTPServer.Reply.json(#"{"state": "RUNNING", "progress": "building"}"#)
                let done = ScriptedHTTPServer.Reply.json(#"{"state": "Success", "progress": "all done"}"#)
                server.on("/jobs/a", .json(#"{"id": "a"}"#), running, running, done)
                server.on("/create-b", ScriptedHTTPServer.Reply(status: 201, body: "", headers: ["Location": "/jobs/b"]))
                server.on("/jobs/b", running, done)
                server.on("/create-c", .json(#"{"links": {"status": "\#(server.base)/jobs/c"}}"#))
                server.on("/jobs/c", running, running, running, done)
                let monitor: [String: JSONValue] = [
                    "waitForCompletion": true, "statusJsonPath": "$.state", "progressJsonPath": "$.progress",
                    "successStatuses": "SUCCESS, OK", "terminalStatuses": "FAILED",
                ]
                var viaLocation = monitor
                viaLocation["statusUrlResolution"] = "locationHeader"
                var viaResponse = monitor
                viaResponse["statusUrlResolution"] = "webhookResponse"
                viaResponse["statusUrlJsonPath"] = "$.links.status"
                let id = try await engine.run(EngineTests.pipeline([
                    Self.webhook("a", server.base + "/jobs/a", monitor),
                    Self.webhook("b", server.base + "/create-b", viaLocation),
                    Self.webhook("c", server.base + "/create-c", viaResponse),
                ]))
                let state = try await engine.finished(id)
                #expect(state.status == .succeeded)
                // getMethod: the create call, then GETs of the same URL until it reads Success.
                #expect(server.received("/jobs/a").map(\.method) == ["POST", "GET", "GET", "GET"])
                #expect(server.received("/jobs/b").map(\.method) == ["GET", "GET"])
                #expect(server.received("/jobs/c").count == 4)
                for ref in ["a", "b", "c"] {
                    #expect(state.stage(ref).outputs["progressMessage"] == "all done", "stage \(ref)")
                    #expect(state.stage(ref).outputs["webhook"]?["monitor"]?["body"]?["state"] == "Success")
                }
                #expect(state.stage("b").outputs["webhook"]?["statusEndpoint"] == .string(server.base + "/jobs/b"))
                // Each check that left the stage running is a recorded task attempt.
                #expect(try await Self.progressCount(engine, id, "a") == 3)
                #expect(try await Self.progressCount(engine, id, "c") == 4)
            }
        }
    }

    @Test("retryable answers are retried with back-off; fail-fast codes, terminal statuses and canceled statuses end the stage")
    func retriesAndFailures() async throws {
        try await ScriptedHTTPServer.with { server in
            try await TestDatabase.with { db in
                let engine = try Engine(db)
                defer { engine.process.terminate() }
                server.on("/flaky", .json("{}", status: 503), .json("{}", status: 429), .json(#"{"ok": true}"#))
                server.on("/teapot", .json(#"{"error": "no"}"#, status: 418))
                server.on("/bad-request", .json("{}", status: 400))
                server.on("/doomed", .json("{}"), .json(#"{"state": "FAILED"}"#))
                server.on("/aborted", .json("{}"), .json(#"{"state": "ABORTED"}"#))
                let statuses: [String: JSONValue] = ["waitForCompletion": true, "statusJsonPath": "state", "successStatuses": "DONE",
                                                     "terminalStatuses": "FAILED", "canceledStatuses": "ABORTED"]
                let unreachable = "http://127.0.0.1:\(try PrivateBroker.freePort())/nothing"
                let runs: [(String, JSONValue, ExecutionStatus)] = [
                    ("flaky", Self.webhook("1", server.base + "/flaky"), .succeeded),
                    ("teapot", Self.webhook("1", server.base + "/teapot", ["failFastStatusCodes": [418]]), .terminal),
                    ("bad request", Self.webhook("1", server.base + "/bad-request"), .terminal),
                    ("unreachable", Self.webhook("1", unreachable, ["maxRetries": 1]), .terminal),
                    ("doomed", Self.webhook("1", server.base + "/doomed", statuses), .terminal),
                    ("aborted", Self.webhook("1", server.base + "/aborted", statuses), .canceled),
                    ("lenient", Self.webhook("1", server.base + "/teapot", ["failFastStatusCodes": [418], "continuePipeline": true]), .failedContinue),
                ]
                var ids: [String: String] = [:]
                for (name, stage, _) in runs { ids[name] = try await engine.run(EngineTests.pipeline([stage])) }
                for (name, _, status) in runs {
                    let state = try await engine.finished(try #require(ids[name]))
                    #expect(state.stage("1").status == status, "\(name): \(state.stage("1").outputs)")
                }
                let flaky = try await engine.repository.load(try #require(ids["flaky"])).stage("1")
                #expect(flaky.outputs["webhook"]?["retries"] == 2)
                #expect(server.received("/flaky").count == 3)
                #expect(server.received("/teapot").count == 2, "fail-fast codes are not retried (two executions call it once each)")
                #expect(server.received("/bad-request").count == 1)
                let lost = try await engine.repository.load(try #require(ids["unreachable"])).stage("1")
                #expect(lost.outputs["error"]?.stringValue?.contains("gave up after 1 retries") == true, "\(lost.outputs)")
                let doomed = try await engine.repository.load(try #require(ids["doomed"])).stage("1")
                #expect(doomed.outputs["error"] == "the webhook reported status 'FAILED'")
            }
        }
    }

    @Test("canceling an execution stops a webhook's polling")
    func cancelStopsPolling() async throws {
        try await ScriptedHTTPServer.with { server in
            try await TestDatabase.with { db in
                let engine = try Engine(db)
                defer { engine.process.terminate() }
                server.on("/forever", .json("{}"), .json(#"{"state": "RUNNING"}"#))
                let id = try await engine.run(EngineTests.pipeline([
                    Self.webhook("1", server.base + "/forever", ["waitForCompletion": true, "statusJsonPath": "state", "successStatuses": "DONE"]),
                ]))
                try await engine.until("two status checks") { server.received("/forever").count >= 3 }
                try await engine.repository.handle(.cancel(by: "tester", reason: nil), executionID: id, metadata: EventMetadata(source: "test"))
                let state = try await engine.finished(id)
                #expect(state.status == .canceled)
                let calls = server.received("/forever").count
                // No timer left for the canceled stage: no check can come any more.
                try await engine.until("the stage's poll timer to be gone") {
                    var timers = 0
                    for try await count in try await db.client.query("SELECT count(*)::int FROM timers WHERE stream_id = \("execution-" + id)",
                                                                     logger: TestEnvironment.logger).decode(Int.self) { timers = count }
                    return timers == 0
                }
                #expect(server.received("/forever").count <= calls + 1, "polling went on after the cancel")
            }
        }
    }
}
