import Access
import EventLog
import Foundation
import Kafka
import Orchestration
import PipelineEngine
import PostgresNIO
import Testing

/// Notifications from a real `topsail all` (its notifier role) to real receivers: HTTP servers
/// standing in for Slack, Teams, Google Chat, GitHub and webhook endpoints, and aiosmtpd with
/// STARTTLS and AUTH for mail; CDEvents read back from the broker and validated against the
/// schemas in schemas/cdevents.
@Suite("Notifications: every channel, each when, retries, a killed notifier, CDEvents", .serialized, .timeLimit(.minutes(5)))
struct NotificationTests {
    typealias Engine = EngineTests.Engine

    /// An SMTP server (aiosmtpd, ops/testing/smtp-server.py) with STARTTLS and AUTH, writing what it accepts to `directory`.
    final class MailServer: Sendable {
        let process: ChildProcess
        let port: Int
        let directory: URL
        let certificate: URL

        init() async throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("smtp"))
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            certificate = directory.appendingPathComponent("cert.pem")
            let key = directory.appendingPathComponent("key.pem")
            let made = try await CLITests.run([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key.path, "-out", certificate.path, "-days", "1",
                "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            ], executable: URL(fileURLWithPath: "/usr/bin/openssl"))
            guard made.status == 0 else { throw SetupError("openssl: \(made.stderr)") }
            port = try PrivateBroker.freePort()
            process = try ChildProcess(try APIContractTests.tool("python"), [
                TestEnvironment.packageRoot.appendingPathComponent("ops/testing/smtp-server.py").path, "--port", String(port),
                "--cert", certificate.path, "--key", key.path, "--user", "notifier", "--password", "mail-s3cret",
                "--out", directory.appendingPathComponent("mail").path,
            ])
            let process = self.process
            try await eventually(timeout: .seconds(20), "the SMTP server to listen") { process.text.contains("ready") }
        }

        var url: String { "smtp://notifier:mail-s3cret@127.0.0.1:\(port)" }

        /// The messages accepted so far.
        func messages() throws -> [JSONValue] {
            let folder = directory.appendingPathComponent("mail")
            let files = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
            return try files.sorted().map { try JSONText(String(decoding: try Data(contentsOf: folder.appendingPathComponent($0)), as: UTF8.self)).decode(JSONValue.self) }
        }

        func stop() {
            process.terminate()
            try? FileManager.default.removeItem(at: directory)
        }
    }

    static func engine(_ db: TestDatabase, receivers: ScriptedHTTPServer, mail: MailServer?, extra: [String] = [], prefix: String? = nil) throws -> Engine {
        var arguments = ["--github-api-url", receivers.base + "/github", "--notification-backoff", "0.1", "--public-url", "https://topsail.example"]
        if let mail { arguments += ["--smtp-url", mail.url, "--smtp-ca-file", mail.certificate.path, "--smtp-from", "topsail@example.com"] }
        return try Engine(db, prefix: prefix ?? TestEnvironment.uniqueName("t") + ".", arguments: arguments + extra,
                          environment: ["TOPSAIL_GITHUB_TOKEN": "gh-test-token"])
    }

    @Test("a pipeline notifies on every channel for each of its when values (application entries merged), exactly once each, and its stages and judgment too; outcomes show in the execution's view")
    func everyChannel() async throws {
        try await ScriptedHTTPServer.with { receivers in
            let mail = try await MailServer()
            defer { mail.stop() }
            for path in ["/slack", "/teams", "/chat", "/hook", "/cdevents", "/judge", "/stage", "/github/repos/acme/api/statuses/abc123"] {
                receivers.on(path, .json("{}"))
            }
            try await TestDatabase.with { db in
                let engine = try Self.engine(db, receivers: receivers, mail: mail)
                defer { engine.process.terminate() }
                let admin = try await APIContractTests.admin(db)
                try await APIContractTests.answering(engine)
                let base = receivers.base
                let application = #"""
                    {"name": "notify", "notifications": [
                      {"type": "googlechat", "address": "\#(base)/chat", "when": ["pipeline.complete"]},
                      {"type": "slack", "address": "\#(base)/slack", "when": ["pipeline.failed"]}]}
                    """#
                #expect(try await APIContractTests.call("POST", engine.api + "/applications", application, admin).status == 200)
                let pipeline = #"""
                    {"id": "notified", "application": "notify", "name": "release", "limitConcurrent": false,
                     "parameterConfig": [{"name": "version"}],
                     "notifications": [
                       {"type": "slack", "address": "\#(base)/slack", "when": ["pipeline.starting", "pipeline.complete", "pipeline.failed"]},
                       {"type": "microsoftteams", "address": "\#(base)/teams", "when": ["pipeline.complete"],
                        "message": {"pipeline.complete": {"text": "released ${execution.name} ${parameters.version}"}}},
                       {"type": "webhook", "address": "\#(base)/hook", "when": ["pipeline.complete"]},
                       {"type": "cdevents", "address": "\#(base)/cdevents", "when": ["pipeline.starting", "pipeline.complete"]},
                       {"type": "email", "address": "ops@example.com", "when": ["pipeline.complete"], "customSubject": "released ${parameters.version}"},
                       {"type": "githubStatus", "when": ["pipeline.starting", "pipeline.complete"]}],
                     "stages": [
                       {"refId": "judge", "type": "manualJudgment", "sendNotifications": true,
                        "notifications": [{"type": "webhook", "address": "\#(base)/judge", "when": ["manualJudgment", "manualJudgmentContinue", "manualJudgmentStop"]}]},
                       {"refId": "pause", "type": "wait", "waitTime": 0, "requisiteStageRefIds": ["judge"], "sendNotifications": true,
                        "notifications": [{"type": "slack", "address": "\#(base)/stage", "when": ["stage.starting", "stage.complete"]}]}]}
                    """#
                let saved = try await APIContractTests.call("POST", engine.api + "/pipelines", pipeline, admin)
                #expect(saved.status == 200, "\(saved.json)")
                let bad = try await APIContractTests.call("POST", engine.api + "/pipelines", pipeline.replacingOccurrences(of: "\"pipeline.starting\", \"pipeline.complete\", \"pipeline.failed\"", with: "\"pipeline.done\""), admin)
                #expect(bad.status == 400 && bad.json["problems"]?.arrayValue?.first?["path"] == "notifications[0].when", "\(bad.json)")

                let triggered = try await APIContractTests.call("POST", engine.api + "/pipelines/notify/release",
                                                                #"{"project": "acme", "slug": "api", "hash": "abc123", "parameters": {"version": "7.1"}}"#, admin)
                let id = try #require(triggered.json["id"]?.stringValue, "\(triggered.json)")
                try await engine.until("the judgment to wait") { try await engine.repository.load(id).stage("judge").status == .running }
                try await engine.until("the judgment's notification") { receivers.received("/judge").count == 1 }
                #expect(try await APIContractTests.call("PATCH", engine.api + "/pipelines/\(id)/stages/judge", #"{"judgmentStatus": "continue"}"#, admin).status == 200)
                #expect(try await engine.finished(id).status == .succeeded)

                let expected = ["/slack": 2, "/teams": 1, "/chat": 1, "/hook": 1, "/cdevents": 2, "/judge": 2, "/stage": 2,
                                "/github/repos/acme/api/statuses/abc123": 2]
                try await engine.until("every notification to arrive") {
                    expected.allSatisfy { receivers.received($0.key).count >= $0.value } && ((try? mail.messages().count) ?? 0) >= 1
                }
                try await Task.sleep(for: .seconds(1.5))
                for (path, count) in expected { #expect(receivers.received(path).count == count, "\(path): \(receivers.received(path).map(\.body))") }
                // The application's slack entry (pipeline.failed) is the pipeline's, which overrides it: not sent twice.
                let slack = receivers.received("/slack").map(\.body)
                #expect(slack.first?.contains("is starting") == true && slack.last?.contains("completed successfully") == true, "\(slack)")
                #expect(receivers.received("/teams").first?.body.contains("released release 7.1") == true, "\(receivers.received("/teams").map(\.body))")
                let hook = try JSONText(try #require(receivers.received("/hook").first?.body)).decode(JSONValue.self)
                #expect(hook["details"]?["type"] == "orca:pipeline:complete" && hook["details"]?["application"] == "notify"
                        && hook["content"]?["execution"]?["id"]?.stringValue == id, "\(hook)")
                let cdevents = receivers.received("/cdevents")
                #expect(cdevents.map { $0.headers["ce-type"] ?? "" } == ["dev.cdevents.pipelinerun.started.0.2.0", "dev.cdevents.pipelinerun.finished.0.2.0"],
                        "\(cdevents.map(\.headers))")
                let statuses = receivers.received("/github/repos/acme/api/statuses/abc123")
                #expect(statuses.allSatisfy { $0.headers["authorization"] == "Bearer gh-test-token" })
                #expect(statuses.map { (try? JSONText($0.body).decode(JSONValue.self))?["state"]?.stringValue ?? "" } == ["pending", "success"])
                let judged = receivers.received("/judge").map(\.body)
                #expect(judged.first?.contains("orca:stage:manualJudgment") == true && judged.last?.contains("orca:stage:manualJudgmentContinue") == true, "\(judged)")
                // Every HTTP notification carries its idempotency key, each its own.
                let keys = expected.keys.flatMap { receivers.received($0).compactMap { $0.headers["idempotency-key"] } }
                #expect(keys.count == expected.values.reduce(0, +) && Set(keys).count == keys.count, "\(keys)")

                let letters = try mail.messages()
                #expect(letters.count == 1, "\(letters)")
                let letter = try #require(letters.first)
                #expect(letter["tls"] == true && letter["authenticated"] == true && letter["to"]?.arrayValue == ["ops@example.com"], "\(letter)")
                let text = letter["message"]?.stringValue ?? ""
                #expect(text.contains("Subject: released 7.1") && text.contains("Message-ID: <") && text.contains("https://topsail.example/pipelines/\(id)"), "\(text)")

                let view = try await APIContractTests.call("GET", engine.api + "/pipelines/\(id)", nil, admin)
                let outcomes = view.json["notifications"]?.arrayValue ?? []
                #expect(outcomes.count == 14 && outcomes.allSatisfy { $0["outcome"] == "sent" }, "\(outcomes)")
                #expect(!outcomes.contains { ($0["address"]?.stringValue ?? "").contains("/slack") }, "a webhook URL's path reached the log")
                #expect(!engine.process.text.contains("mail-s3cret"), "the SMTP password reached the engine's log")
            }
        }
    }

    @Test("a failed execution notifies pipeline.failed; a receiver failing three times gets it on the fourth attempt; one that keeps failing gets notification.failed in the execution's view; a canceled execution notifies nothing")
    func retriesFailuresAndCancel() async throws {
        try await ScriptedHTTPServer.with { receivers in
            receivers.on("/flaky", .json("{}", status: 503), .json("{}", status: 500), .json("{}", status: 502), .json("{}"))
            receivers.on("/down", .json("{}", status: 500))
            receivers.on("/canceled", .json("{}"))
            try await TestDatabase.with { db in
                let engine = try Self.engine(db, receivers: receivers, mail: nil, extra: ["--notification-attempts", "4"])
                defer { engine.process.terminate() }
                let admin = try await APIContractTests.admin(db)
                try await APIContractTests.answering(engine)
                let base = receivers.base
                let failing = #"""
                    {"id": "failing", "application": "notify", "name": "failing", "limitConcurrent": false,
                     "notifications": [{"type": "slack", "address": "\#(base)/flaky", "when": ["pipeline.failed"]},
                                       {"type": "webhook", "address": "\#(base)/down", "when": ["pipeline.failed"]},
                                       {"type": "slack", "address": "\#(base)/canceled", "when": ["pipeline.complete"]}],
                     "stages": [{"refId": "check", "type": "checkPreconditions", "preconditions": [{"type": "expression", "context": {"expression": "${false}"}}]}]}
                    """#
                #expect(try await APIContractTests.call("POST", engine.api + "/pipelines", failing, admin).status == 200)
                let id = try #require(try await APIContractTests.call("POST", engine.api + "/pipelines/notify/failing", "{}", admin).json["id"]?.stringValue)
                #expect(try await engine.finished(id).status == .terminal)
                try await engine.until("the flaky receiver to get it and the other to be given up on") {
                    let outcomes = try await APIContractTests.call("GET", engine.api + "/pipelines/\(id)", nil, admin).json["notifications"]?.arrayValue ?? []
                    return outcomes.count == 2
                }
                #expect(receivers.received("/flaky").count == 4, "three failures, then success")
                #expect(Set(receivers.received("/flaky").compactMap { $0.headers["idempotency-key"] }).count == 1, "every attempt carries the same key")
                #expect(receivers.received("/down").count == 4, "attempts are bounded by --notification-attempts")
                let outcomes = try await APIContractTests.call("GET", engine.api + "/pipelines/\(id)", nil, admin).json["notifications"]?.arrayValue ?? []
                let failed = outcomes.first { $0["outcome"] == "failed" }
                #expect(failed?["type"] == "webhook" && failed?["attempts"] == 4 && failed?["error"]?.stringValue?.contains("HTTP 500") == true, "\(outcomes)")
                #expect(outcomes.first { $0["outcome"] == "sent" }?["attempts"] == 4, "\(outcomes)")

                let waiting = #"""
                    {"id": "waiting", "application": "notify", "name": "waiting", "limitConcurrent": false,
                     "notifications": [{"type": "slack", "address": "\#(base)/canceled", "when": ["pipeline.complete", "pipeline.failed"]}],
                     "stages": [{"refId": "w", "type": "wait", "waitTime": 300}]}
                    """#
                #expect(try await APIContractTests.call("POST", engine.api + "/pipelines", waiting, admin).status == 200)
                let canceled = try #require(try await APIContractTests.call("POST", engine.api + "/pipelines/notify/waiting", "{}", admin).json["id"]?.stringValue)
                try await engine.until("the wait to run") { try await engine.repository.load(canceled).stage("w").status == .running }
                #expect(try await APIContractTests.call("PUT", engine.api + "/pipelines/\(canceled)/cancel", nil, admin).status == 200)
                #expect(try await engine.finished(canceled).status == .canceled)
                try await Task.sleep(for: .seconds(2))
                #expect(receivers.received("/canceled").isEmpty, "a canceled execution notified")
            }
        }
    }

    @Test("the notifier killed with kill -9 while a notification is being retried: after the restart it is sent with the same idempotency key, and recorded once")
    func killedMidSend() async throws {
        try await ScriptedHTTPServer.with { receivers in
            receivers.on("/slow", .json("{}", status: 503), .json("{}", status: 503), .json("{}", status: 503), .json("{}", status: 503), .json("{}"))
            try await TestDatabase.with { db in
                let prefix = TestEnvironment.uniqueName("t") + "."
                let engine = try Self.engine(db, receivers: receivers, mail: nil, extra: ["--notification-backoff", "2"], prefix: prefix)
                defer { engine.process.terminate() }
                let admin = try await APIContractTests.admin(db)
                try await APIContractTests.answering(engine)
                let pipeline = #"""
                    {"id": "slow", "application": "notify", "name": "slow", "limitConcurrent": false,
                     "notifications": [{"type": "webhook", "address": "\#(receivers.base)/slow", "when": ["pipeline.complete"]}],
                     "stages": [{"refId": "w", "type": "wait", "waitTime": 0}]}
                    """#
                #expect(try await APIContractTests.call("POST", engine.api + "/pipelines", pipeline, admin).status == 200)
                let id = try #require(try await APIContractTests.call("POST", engine.api + "/pipelines/notify/slow", "{}", admin).json["id"]?.stringValue)
                #expect(try await engine.finished(id).status == .succeeded)
                // In flight: the first attempt failed and the notifier waits 2 s to try again.
                try await engine.until("the first attempt") { receivers.received("/slow").count >= 1 }
                engine.process.killHard()
                #expect(receivers.received("/slow").count < 5, "the notification was sent before the kill")
                let restarted = try Self.engine(db, receivers: receivers, mail: nil, extra: ["--notification-backoff", "0.1"], prefix: prefix)
                defer { restarted.process.terminate() }
                try await APIContractTests.answering(restarted)
                try await restarted.until(timeout: .seconds(60), "the notification to be sent after the restart") {
                    let outcomes = try await APIContractTests.call("GET", restarted.api + "/pipelines/\(id)", nil, admin).json["notifications"]?.arrayValue ?? []
                    return outcomes.contains { $0["outcome"] == "sent" }
                }
                let attempts = receivers.received("/slow")
                #expect(attempts.count >= 5 && Set(attempts.compactMap { $0.headers["idempotency-key"] }).count == 1, "\(attempts.map(\.headers))")
                try await Task.sleep(for: .seconds(1))
                let outcomes = try await APIContractTests.call("GET", restarted.api + "/pipelines/\(id)", nil, admin).json["notifications"]?.arrayValue ?? []
                #expect(outcomes.count == 1, "\(outcomes)")
            }
        }
    }

    @Test("every execution and stage transition is published to <prefix>cdevents with the CloudEvents Kafka binding, and validates against the CDEvents schemas")
    func cdeventsOnKafka() async throws {
        try await ScriptedHTTPServer.with { receivers in
            try await TestDatabase.with { db in
                let engine = try Self.engine(db, receivers: receivers, mail: nil)
                defer { engine.process.terminate() }
                try await createTopic(engine.prefix + "cdevents", partitions: 2)
                let id = try await engine.run(EngineTests.pipeline([
                    ["refId": "a", "type": "wait", "waitTime": 0],
                    ["refId": "b", "type": "checkPreconditions", "requisiteStageRefIds": ["a"],
                     "preconditions": [["type": "expression", "context": ["expression": "${false}"]]]],
                ]))
                #expect(try await engine.finished(id).status == .terminal)
                // queued, started, 2 × (taskRun started, finished), finished.
                let messages = try await consume(topic: engine.prefix + "cdevents") { messages in
                    messages.filter { $0.header("ce_subject")?.hasPrefix(id) == true }.count >= 7
                }
                let mine = messages.filter { $0.header("ce_subject")?.hasPrefix(id) == true }
                let types = mine.compactMap { $0.header("ce_type") }
                #expect(Set(types) == ["dev.cdevents.pipelinerun.queued.0.2.0", "dev.cdevents.pipelinerun.started.0.2.0", "dev.cdevents.taskrun.started.0.2.0",
                                       "dev.cdevents.taskrun.finished.0.2.0", "dev.cdevents.pipelinerun.finished.0.2.0"], "\(types)")
                #expect(mine.allSatisfy { $0.header("ce_specversion") == "1.0" && $0.header("ce_id") != nil && $0.header("content-type") == "application/json" })
                let finished = try #require(mine.first { $0.header("ce_type") == "dev.cdevents.pipelinerun.finished.0.2.0" })
                let data = try JSONText(String(decoding: finished.value, as: UTF8.self)).decode(JSONValue.self)
                #expect(data["subject"]?["content"]?["outcome"] == "failure" && data["context"]?["version"] == "0.4.1", "\(data)")

                let lines = try mine.map { message in
                    try JSONText(encoding: JSONValue.object([
                        "type": .string(message.header("ce_type") ?? ""),
                        "data": try JSONText(String(decoding: message.value, as: UTF8.self)).decode(JSONValue.self),
                    ])).text
                }.joined(separator: "\n")
                let file = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("cdevents") + ".jsonl")
                try lines.write(to: file, atomically: true, encoding: .utf8)
                defer { try? FileManager.default.removeItem(at: file) }
                let validated = try await CLITests.run([
                    TestEnvironment.packageRoot.appendingPathComponent("ops/testing/validate-cdevents.py").path,
                    TestEnvironment.packageRoot.appendingPathComponent("schemas/cdevents/0.4.1").path, file.path,
                ], executable: try APIContractTests.tool("python"))
                #expect(validated.status == 0, "\(validated.stdout)\(validated.stderr)")
                #expect(validated.stdout.contains("7 events, 0 problems"), "\(validated.stdout)")
            }
        }
    }
}
