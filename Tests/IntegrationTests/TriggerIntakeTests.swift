import Access
import Crypto
import EventLog
import Foundation
import Kafka
import Orchestration
import PipelineEngine
import PostgresNIO
import Testing
import Triggers

/// Deliveries from real HTTP requests to a real `topsail all` (API, projector, engine) over the
/// real PostgreSQL and broker: webhooks, git pushes and CI builds start executions that succeed,
/// retries start nothing new, signatures and permissions are enforced, and receipts are events.
@Suite("Triggers: webhooks, git pushes and CI builds through the API", .serialized, .timeLimit(.minutes(5)))
struct TriggerIntakeTests {
    typealias Engine = EngineTests.Engine

    static let key = Data((0..<32).map { UInt8(($0 * 7 + 3) % 256) }).base64EncodedString()

    /// An engine with a secrets key, an admin token, and a service account `deployer` with EXECUTE on `shop`.
    static func setUp(_ db: TestDatabase) async throws -> (Engine, admin: String) {
        let engine = try Engine(db, arguments: ["--cron-misfire-threshold", "2"], environment: ["TOPSAIL_SECRETS_KEY": key])
        let admin = try await APIContractTests.admin(db)
        try await APIContractTests.answering(engine)
        let permissions = #"{"READ": ["devs"], "WRITE": ["devs"], "EXECUTE": ["deployers"]}"#
        #expect(try await APIContractTests.call("POST", engine.api + "/applications", #"{"name": "shop", "permissions": \#(permissions)}"#, admin).status == 200)
        #expect(try await APIContractTests.call("POST", engine.api + "/serviceAccounts", #"{"name": "deployer", "roles": ["deployers"]}"#, admin).status == 200)
        #expect(try await APIContractTests.call("POST", engine.api + "/serviceAccounts", #"{"name": "bystander", "roles": ["devs"]}"#, admin).status == 200)
        return (engine, admin)
    }

    /// Saves a pipeline through the API and waits until the projection indexes its triggers.
    static func save(_ engine: Engine, _ admin: String, id: String, triggers: String, extra: String = "") async throws {
        let pipeline = #"""
            {"id": "\#(id)", "application": "shop", "name": "\#(id)", "limitConcurrent": false, "triggers": \#(triggers),
             "stages": [{"refId": "1", "type": "wait", "waitTime": 0}]\#(extra)}
            """#
        let saved = try await APIContractTests.call("POST", engine.api + "/pipelines", pipeline, admin)
        #expect(saved.status == 200, "\(saved.json)")
        let version = saved.json["version"]?.intValue ?? 0
        try await engine.until("pipeline \(id) v\(version) to be projected") {
            var found = false
            for try await _ in try await engine.db.client.query(
                "SELECT 1 FROM pipeline_configs WHERE pipeline_id = \(id) AND version >= \(version)", logger: TestEnvironment.logger) { found = true }
            return found
        }
    }

    static func executions(of pipelineID: String, _ db: TestDatabase) async throws -> [String] {
        var ids: [String] = []
        for try await id in try await db.client.query("""
            SELECT stream_id FROM events WHERE event_type = 'execution.triggered' AND payload->'pipeline'->>'id' = \(pipelineID) ORDER BY position
            """, logger: TestEnvironment.logger).decode(String.self) { ids.append(id) }
        return ids
    }

    static func sign(_ body: String, _ secret: String) -> String {
        "sha256=" + HMAC<SHA256>.authenticationCode(for: Array(body.utf8), using: SymmetricKey(data: Array(secret.utf8))).map { String(format: "%02x", $0) }.joined()
    }

    @Test("a webhook starts the pipelines whose constraints match, as their runAsUser; a retry with the same Idempotency-Key starts nothing new; the answer says which triggers did not fire and why")
    func webhooks() async throws {
        try await TestDatabase.with { db in
            let (engine, admin) = try await Self.setUp(db)
            defer { engine.process.terminate() }
            try await Self.save(engine, admin, id: "hook-deploy", triggers: #"""
                [{"type": "webhook", "source": "releases", "enabled": true, "runAsUser": "deployer",
                  "payloadConstraints": {"env": "^prod", "$.artifact.tags[*]": "^release-\\d+$"}}]
                """#, extra: #", "parameterConfig": [{"name": "version", "required": true}, {"name": "region", "default": "eu"}]"#)
            try await Self.save(engine, admin, id: "hook-staging", triggers: #"""
                [{"type": "webhook", "source": "releases", "enabled": true, "runAsUser": "deployer", "payloadConstraints": {"env": "^staging"}}]
                """#)
            try await Self.save(engine, admin, id: "hook-unpermitted", triggers: #"""
                [{"type": "webhook", "source": "releases", "enabled": true, "runAsUser": "bystander"}]
                """#)
            let body = #"{"env": "production", "artifact": {"tags": ["latest", "release-42"]}, "parameters": {"version": "1.4.2"}}"#
            let first = try await APIContractTests.call("POST", engine.api + "/webhooks/webhook/releases", body, admin, headers: ["Idempotency-Key": "deploy-1.4.2"])
            #expect(first.status == 200 && first.json["eventProcessed"] == true, "\(first.json)")
            let started = first.json["executions"]?.arrayValue ?? []
            #expect(started.count == 1 && started.first?["pipelineId"] == "hook-deploy", "\(first.json)")
            let notMatched = first.json["notMatched"]?.arrayValue ?? []
            let reasons = Dictionary(uniqueKeysWithValues: notMatched.compactMap { entry in entry["pipelineId"]?.stringValue.map { ($0, entry) } })
            #expect(reasons["hook-staging"]?["reason"]?.stringValue?.contains("^staging") == true, "\(notMatched)")
            #expect(reasons["hook-unpermitted"]?["reason"]?.stringValue?.contains("may not EXECUTE application shop") == true, "\(notMatched)")
            #expect(reasons["hook-unpermitted"]?["refused"] == true)

            let id = try #require(started.first?["id"]?.stringValue)
            let state = try await engine.finished(id)
            #expect(state.status == .succeeded)
            let trigger = state.trigger
            #expect(trigger["type"] == "webhook" && trigger["source"] == "releases" && trigger["user"] == "deployer")
            #expect(trigger["eventId"] == first.json["eventId"] && trigger["payload"]?["env"] == "production", "\(trigger)")
            #expect(state.parameters["version"] == "1.4.2" && state.parameters["region"] == "eu", "\(state.parameters)")

            // The sender retries: the same receipt, no second execution.
            let retry = try await APIContractTests.call("POST", engine.api + "/webhooks/webhook/releases", body, nil, headers: ["Idempotency-Key": "deploy-1.4.2"])
            #expect(retry.status == 200 && retry.json["duplicate"] == true && retry.json["executions"]?.arrayValue?.first?["id"]?.stringValue == id, "\(retry.json)")
            // Without a token the answer names no pipelines it did not start.
            #expect(retry.json["notMatched"]?.arrayValue?.isEmpty == true && retry.json["notMatchedHidden"] == 2, "\(retry.json)")
            #expect(try await Self.executions(of: "hook-deploy", db).count == 1)

            // A required parameter missing: not started, and said so.
            let missing = try await APIContractTests.call("POST", engine.api + "/webhooks/webhook/releases",
                                                          #"{"env": "prod", "artifact": {"tags": ["release-1"]}}"#, admin)
            let why = missing.json["notMatched"]?.arrayValue?.first { $0["pipelineId"] == "hook-deploy" }?["reason"]?.stringValue
            #expect(missing.json["executions"]?.arrayValue?.isEmpty == true && why?.contains("missing required parameters: version") == true, "\(missing.json)")

            // Every receipt is an event, with what it decided.
            var receipts = 0
            for try await _ in try await db.client.query("SELECT 1 FROM events WHERE event_type = 'trigger.received'", logger: TestEnvironment.logger) { receipts += 1 }
            #expect(receipts == 2, "two deliveries, one retried")

            // Bad input: 400 naming the problem; over the limit: 413.
            let malformed = try await APIContractTests.call("POST", engine.api + "/webhooks/webhook/releases", "[1, 2]", nil)
            #expect(malformed.status == 400 && malformed.json["message"]?.stringValue?.contains("JSON object") == true, "\(malformed.json)")
            let badParameters = try await APIContractTests.call("POST", engine.api + "/webhooks/webhook/releases", #"{"parameters": [1]}"#, nil)
            #expect(badParameters.status == 400, "\(badParameters.json)")
            let huge = #"{"blob": "\#(String(repeating: "x", count: 1_100_000))"}"#
            #expect(try await APIContractTests.call("POST", engine.api + "/webhooks/webhook/releases", huge, nil).status == 413)
        }
    }

    @Test("git pushes: a valid X-Hub-Signature-256 starts the pipeline; a bad or missing one answers 401, starts nothing and is recorded; the secret is stored only sealed; GitLab's token and GitHub's ping")
    func gitPushes() async throws {
        try await TestDatabase.with { db in
            let (engine, admin) = try await Self.setUp(db)
            defer { engine.process.terminate() }
            let secret = "correct-horse-battery-staple"
            try await Self.save(engine, admin, id: "git-api", triggers: #"""
                [{"type": "git", "source": "github", "project": "acme", "slug": "api", "branch": "main|release/.*", "enabled": true,
                  "runAsUser": "deployer", "secret": "\#(secret)"}]
                """#)
            try await Self.save(engine, admin, id: "git-lab", triggers: #"""
                [{"type": "git", "source": "gitlab", "project": "grp", "slug": "web", "enabled": true, "runAsUser": "deployer", "secret": "\#(secret)"}]
                """#)
            // The secret is in no event and in no answer: sealed on save.
            var plain = 0
            for try await _ in try await db.client.query("SELECT 1 FROM events WHERE payload::text LIKE \("%" + secret + "%")", logger: TestEnvironment.logger) { plain += 1 }
            #expect(plain == 0, "a trigger secret was stored in the clear")
            let config = try await APIContractTests.call("GET", engine.api + "/applications/shop/pipelineConfigs/git-api", nil, admin)
            #expect(config.json["triggers"]?.arrayValue?.first?["secret"]?.stringValue?.hasPrefix(SecretSeal.prefix) == true, "\(config.json)")

            let push = #"{"ref": "refs/heads/release/2.0", "after": "9f8e7d", "repository": {"name": "api", "owner": {"login": "acme"}}}"#
            let github = ["X-GitHub-Event": "push", "Content-Type": "application/json"]
            let unsigned = try await APIContractTests.call("POST", engine.api + "/webhooks/git/github", push, nil, headers: github.merging(["X-GitHub-Delivery": "d-1"]) { $1 })
            #expect(unsigned.status == 401 && unsigned.json["executions"]?.arrayValue?.isEmpty == true, "\(unsigned.json)")
            let forged = try await APIContractTests.call("POST", engine.api + "/webhooks/git/github", push, nil, headers: github.merging([
                "X-GitHub-Delivery": "d-2", "X-Hub-Signature-256": Self.sign(push, "guess"),
            ]) { $1 })
            #expect(forged.status == 401, "\(forged.json)")
            #expect(try await Self.executions(of: "git-api", db).isEmpty, "a delivery without the secret started something")
            // The refusals are recorded, with the reason.
            var refusals: [String] = []
            for try await text in try await db.client.query(
                "SELECT payload->'decisions'->0->>'reason' FROM events WHERE event_type = 'trigger.received' ORDER BY position", logger: TestEnvironment.logger
            ).decode(String?.self) { refusals.append(text ?? "") }
            #expect(refusals.count == 2 && refusals.allSatisfy { $0.hasPrefix("signature: ") }, "\(refusals)")

            let signed = try await APIContractTests.call("POST", engine.api + "/webhooks/git/github", push, nil, headers: github.merging([
                "X-GitHub-Delivery": "d-3", "X-Hub-Signature-256": Self.sign(push, secret),
            ]) { $1 })
            #expect(signed.status == 200 && signed.json["executions"]?.arrayValue?.count == 1, "\(signed.json)")
            let id = try #require(signed.json["executions"]?.arrayValue?.first?["id"]?.stringValue)
            let state = try await engine.finished(id)
            #expect(state.status == .succeeded)
            #expect(state.trigger["hash"] == "9f8e7d" && state.trigger["branch"] == "release/2.0" && state.trigger["secret"] == nil, "\(state.trigger)")
            // GitHub redelivers the same delivery id: nothing new.
            let redelivered = try await APIContractTests.call("POST", engine.api + "/webhooks/git/github", push, nil, headers: github.merging([
                "X-GitHub-Delivery": "d-3", "X-Hub-Signature-256": Self.sign(push, secret),
            ]) { $1 })
            let afterRedelivery = try await Self.executions(of: "git-api", db)
            #expect(redelivered.json["duplicate"] == true && afterRedelivery.count == 1, "\(redelivered.json)")
            // A branch the trigger does not want (the whole name must match).
            let feature = push.replacingOccurrences(of: "release/2.0", with: "feature/main")
            let other = try await APIContractTests.call("POST", engine.api + "/webhooks/git/github", feature, admin, headers: github.merging([
                "X-GitHub-Delivery": "d-4", "X-Hub-Signature-256": Self.sign(feature, secret),
            ]) { $1 })
            #expect(other.status == 200 && other.json["notMatched"]?.arrayValue?.first?["reason"]?.stringValue?.contains("does not match") == true, "\(other.json)")

            let ping = try await APIContractTests.call("POST", engine.api + "/webhooks/git/github", #"{"zen": "Keep it logically awesome."}"#, nil,
                                                       headers: ["X-GitHub-Event": "ping"])
            #expect(ping.status == 200 && ping.json["eventProcessed"] == false, "\(ping.json)")

            let labPush = #"{"object_kind": "push", "ref": "refs/heads/main", "checkout_sha": "abc", "project": {"namespace": "grp", "path": "web"}}"#
            let wrongToken = try await APIContractTests.call("POST", engine.api + "/webhooks/git/gitlab", labPush, nil, headers: [
                "X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "nope", "X-Gitlab-Event-UUID": "g-1"])
            #expect(wrongToken.status == 401, "\(wrongToken.json)")
            let rightToken = try await APIContractTests.call("POST", engine.api + "/webhooks/git/gitlab", labPush, nil, headers: [
                "X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret, "X-Gitlab-Event-UUID": "g-2"])
            #expect(rightToken.status == 200 && rightToken.json["executions"]?.arrayValue?.count == 1, "\(rightToken.json)")
            #expect(!engine.process.text.contains(secret), "the secret reached the engine's log")
        }
    }

    @Test("CI builds: Jenkins' COMPLETED and FINALIZED notifications of one build start one execution with buildInfo; the generic build JSON works; a failed build starts nothing")
    func ciBuilds() async throws {
        try await TestDatabase.with { db in
            let (engine, admin) = try await Self.setUp(db)
            defer { engine.process.terminate() }
            try await Self.save(engine, admin, id: "after-build", triggers: #"""
                [{"type": "jenkins", "master": "ci-main", "job": "api-build", "enabled": true, "runAsUser": "deployer"},
                 {"type": "gitlab-ci", "master": "ci-main", "job": "web", "enabled": true, "runAsUser": "deployer"}]
                """#, extra: #", "parameterConfig": [{"name": "IMAGE"}]"#)
            func jenkins(_ phase: String, status: String = "SUCCESS") -> String {
                #"{"name": "api-build", "url": "job/api-build/", "build": {"full_url": "http://ci/job/api-build/17/", "number": 17, "phase": "\#(phase)", "status": "\#(status)", "scm": {"commit": "c0ffee", "branch": "origin/main"}}}"#
            }
            let startedBuild = try await APIContractTests.call("POST", engine.api + "/ci/builds/ci-main", #"{"name": "api-build", "build": {"number": 17, "phase": "STARTED"}}"#, admin)
            #expect(startedBuild.status == 200 && startedBuild.json["executions"]?.arrayValue?.isEmpty == true, "\(startedBuild.json)")
            let completed = try await APIContractTests.call("POST", engine.api + "/ci/builds/ci-main", jenkins("COMPLETED"), nil)
            let finalized = try await APIContractTests.call("POST", engine.api + "/ci/builds/ci-main", jenkins("FINALIZED"), nil)
            #expect(completed.json["executions"]?.arrayValue?.count == 1 && finalized.json["duplicate"] == true, "\(completed.json) \(finalized.json)")
            let id = try #require(completed.json["executions"]?.arrayValue?.first?["id"]?.stringValue)
            let state = try await engine.finished(id)
            #expect(state.status == .succeeded)
            #expect(state.trigger["buildNumber"] == 17 && state.trigger["buildInfo"]?["url"] == "http://ci/job/api-build/17/", "\(state.trigger)")
            #expect(state.trigger["buildInfo"]?["scm"]?.arrayValue?.first?["sha1"] == "c0ffee")

            let generic = #"{"job": "web", "number": 5, "result": "SUCCESS", "url": "https://gitlab/ci/5", "properties": {"IMAGE": "web:5"}}"#
            let built = try await APIContractTests.call("POST", engine.api + "/ci/builds/ci-main", generic, nil)
            let webID = try #require(built.json["executions"]?.arrayValue?.first?["id"]?.stringValue, "\(built.json)")
            let web = try await engine.finished(webID)
            #expect(web.status == .succeeded && web.parameters["IMAGE"] == "web:5" && web.trigger["type"] == "gitlab-ci", "\(web.parameters)")
            let failed = try await APIContractTests.call("POST", engine.api + "/ci/builds/ci-main", #"{"job": "web", "number": 6, "result": "FAILURE"}"#, admin)
            #expect(failed.json["executions"]?.arrayValue?.isEmpty == true
                    && failed.json["notMatched"]?.arrayValue?.first { $0["type"] == "gitlab-ci" }?["reason"]?.stringValue?.contains("FAILURE") == true,
                    "\(failed.json)")
            #expect(try await Self.executions(of: "after-build", db).count == 2)
        }
    }

    @Test("pipeline triggers: a completed execution starts the pipelines that follow it with its status, once, with trigger.parentExecution; a pipeline that triggers itself stops after 10 in a chain")
    func pipelineChains() async throws {
        try await TestDatabase.with { db in
            let (engine, admin) = try await Self.setUp(db)
            defer { engine.process.terminate() }
            try await Self.save(engine, admin, id: "build", triggers: "[]")
            try await Self.save(engine, admin, id: "on-success", triggers: #"""
                [{"type": "pipeline", "application": "shop", "pipeline": "build", "status": ["successful"], "enabled": true, "runAsUser": "deployer"}]
                """#)
            try await Self.save(engine, admin, id: "on-failure", triggers: #"""
                [{"type": "pipeline", "application": "shop", "pipeline": "build", "status": ["failed"], "enabled": true, "runAsUser": "deployer"}]
                """#)
            let triggered = try await APIContractTests.call("POST", engine.api + "/pipelines/shop/build", "{}", admin)
            let parent = try #require(triggered.json["id"]?.stringValue, "\(triggered.json)")
            #expect(try await engine.finished(parent).status == .succeeded)
            var children: [String] = []
            try await engine.until("the following pipeline to start") {
                children = try await Self.executions(of: "on-success", db)
                return !children.isEmpty
            }
            let child = String(try #require(children.first).dropFirst("execution-".count))
            let state = try await engine.finished(child)
            #expect(state.status == .succeeded)
            #expect(state.trigger["type"] == "pipeline" && state.trigger["parentExecution"]?["id"]?.stringValue == parent
                    && state.trigger["parentStatus"] == "SUCCEEDED" && state.trigger["user"] == "deployer", "\(state.trigger)")
            // The completion's receipt records why the other did not start.
            var reasons: [String] = []
            for try await text in try await db.client.query("""
                SELECT d->>'reason' FROM events, jsonb_array_elements(payload->'decisions') d
                 WHERE event_type = 'trigger.received' AND d->>'pipelineId' = 'on-failure'
                """, logger: TestEnvironment.logger).decode(String?.self) { reasons.append(text ?? "") }
            #expect(reasons.count == 1 && reasons.first?.contains("the trigger wants failed") == true, "\(reasons)")
            #expect(try await Self.executions(of: "on-failure", db).isEmpty)
            #expect(try await Self.executions(of: "on-success", db).count == 1, "a completion fired twice")

            try await Self.save(engine, admin, id: "loop", triggers: #"""
                [{"type": "pipeline", "pipeline": "loop", "status": ["successful"], "enabled": true, "runAsUser": "deployer"}]
                """#)
            #expect(try await APIContractTests.call("POST", engine.api + "/pipelines/shop/loop", "{}", admin).status == 202)
            try await engine.until(timeout: .seconds(90), "the loop to run 11 times (chain 0 to 10)") {
                try await Self.executions(of: "loop", db).count >= 11
            }
            try await Task.sleep(for: .seconds(2))
            #expect(try await Self.executions(of: "loop", db).count == 11, "the chain did not stop at 10")
        }
    }

    /// Each run of pipeline `pipeline`: which trigger (its cron expression and zone) and its fire time.
    struct CronRun: Sendable, CustomStringConvertible {
        let expression: String
        let zone: String
        let scheduled: String
        let late: Bool

        var time: Date? { try? Date(scheduled, strategy: .iso8601) }
        var description: String { "\(expression) (\(zone)) at \(scheduled)\(late ? ", late" : "")" }
    }

    static func cronRuns(_ db: TestDatabase, pipeline: String) async throws -> [CronRun] {
        var runs: [CronRun] = []
        for try await (expression, zone, scheduled, late) in try await db.client.query("""
            SELECT payload->'trigger'->>'cronExpression', payload->'trigger'->>'timeZone', payload->'trigger'->>'scheduledTime',
                   coalesce((payload->'trigger'->>'late')::boolean, false)
              FROM events WHERE event_type = 'execution.triggered' AND payload->'pipeline'->>'id' = \(pipeline) ORDER BY position
            """, logger: TestEnvironment.logger).decode((String, String, String, Bool).self) {
            runs.append(CronRun(expression: expression, zone: zone, scheduled: scheduled, late: late))
        }
        return runs
    }

    /// The hours it is now, and in a minute and a half, in `zone` ("13" or "13,14").
    static func hours(in zone: String) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: zone)!
        return Set([Date(), Date().addingTimeInterval(90)].map { calendar.component(.hour, from: $0) }).sorted().map(String.init).joined(separator: ",")
    }

    @Test("cron: triggers fire in their own time zones, each fire time once with two engines running; after both are killed, missed fire times are skipped, or fire once late with misfire: fireOnce")
    func cronTriggers() async throws {
        try await TestDatabase.with { db in try await Self.cronScenario(db) }
    }

    static func cronScenario(_ db: TestDatabase) async throws {
        let (first, admin) = try await Self.setUp(db)
        defer { first.process.terminate() }
        // Checked on save, with the next five fire times in the answer.
        let invalid = try await APIContractTests.call("POST", first.api + "/pipelines", #"""
            {"id": "bad-cron", "application": "shop", "name": "bad-cron", "stages": [{"refId": "1", "type": "wait", "waitTime": 0}],
             "triggers": [{"type": "cron", "cronExpression": "0 0 25 * * ?", "enabled": true}, {"type": "cron", "cronExpression": "0 0 1 * * ?", "timeZone": "Mars/Olympus"}]}
            """#, admin)
        let paths = invalid.json["problems"]?.arrayValue?.compactMap { $0["path"]?.stringValue } ?? []
        #expect(invalid.status == 400 && paths == ["triggers[0].cronExpression", "triggers[1].timeZone"], "\(invalid.json)")
        let nightly = try await APIContractTests.call("POST", first.api + "/pipelines", #"""
            {"id": "nightly", "application": "shop", "name": "nightly", "stages": [{"refId": "1", "type": "wait", "waitTime": 0}],
             "triggers": [{"type": "cron", "cronExpression": "0 30 2 * * ?", "timeZone": "America/New_York", "enabled": true}]}
            """#, admin)
        let times = nightly.json["cron"]?.arrayValue?.first?["nextFireTimes"]?.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(nightly.status == 200 && times.count == 5 && times.allSatisfy { $0.hasSuffix(":30:00Z") }, "\(nightly.json)")

        let engineArguments = ["--cron-misfire-threshold", "2"], environment = ["TOPSAIL_SECRETS_KEY": Self.key]
        let second = try Engine(db, prefix: first.prefix, arguments: engineArguments, environment: environment)
        defer { second.process.terminate() }
        // The trigger fires only if the clock reads its hours in its own zone.
        let kolkata = "0/2 * \(Self.hours(in: "Asia/Kolkata")) * * ?", utc = "1/2 * \(Self.hours(in: "UTC")) * * ?"
        // UTC's hours read in Kolkata (5:30 ahead): never now.
        let wrongZone = "0/2 * \(Self.hours(in: "UTC")) * * ?"
        try await Self.save(first, admin, id: "tick", triggers: #"""
            [{"type": "cron", "cronExpression": "\#(kolkata)", "timeZone": "Asia/Kolkata", "enabled": true, "runAsUser": "deployer"},
             {"type": "cron", "cronExpression": "\#(utc)", "enabled": true, "runAsUser": "deployer", "misfire": "fireOnce"},
             {"type": "cron", "id": "wrong-zone", "cronExpression": "\#(wrongZone)", "timeZone": "Asia/Kolkata", "enabled": true, "runAsUser": "deployer"}]
            """#)
        try await first.until(timeout: .seconds(30), "each zone's trigger to fire three times") {
            let runs = try await Self.cronRuns(db, pipeline: "tick")
            return runs.filter { $0.zone == "Asia/Kolkata" }.count >= 3 && runs.filter { $0.zone == "UTC" }.count >= 3
        }
        var runs = try await Self.cronRuns(db, pipeline: "tick")
        #expect(!runs.contains { $0.expression == wrongZone }, "a trigger fired in the wrong time zone")
        let fireTimes = runs.map { "\($0.expression) \($0.scheduled)" }
        #expect(Set(fireTimes).count == fireTimes.count, "a fire time ran twice with two engines: \(fireTimes)")

        // Both engines killed for longer than the misfire threshold, then started again.
        first.process.killHard()
        second.process.killHard()
        let killedAt = Date()
        try await Task.sleep(for: .seconds(7))
        let restartedAt = Date()
        let restarted = try Engine(db, prefix: first.prefix, arguments: engineArguments, environment: environment)
        defer { restarted.process.terminate() }
        let secondAgain = try Engine(db, prefix: first.prefix, arguments: engineArguments, environment: environment)
        defer { secondAgain.process.terminate() }
        try await restarted.until(timeout: .seconds(30), "both triggers to fire again after the restart, and the late run") {
            let runs = try await Self.cronRuns(db, pipeline: "tick")
            let after = runs.filter { ($0.time ?? .distantPast) > restartedAt && !$0.late }
            return Set(after.map(\.zone)) == ["Asia/Kolkata", "UTC"] && runs.contains { $0.late }
        }
        // Both schedulers have looked at the gap by now; a second late run would be in the log.
        try await Task.sleep(for: .seconds(2))
        runs = try await Self.cronRuns(db, pipeline: "tick")
        let (from, to) = (killedAt.addingTimeInterval(1), restartedAt.addingTimeInterval(-3))
        let during = runs.filter { ($0.time ?? .distantPast) > from && ($0.time ?? .distantFuture) < to }
        #expect(during.allSatisfy { $0.zone == "UTC" && $0.late }, "a missed fire time of the skip trigger ran: \(during)")
        #expect(runs.filter { $0.late }.count == 1, "fireOnce should fire exactly one late run: \(runs.filter { $0.late })")
        let all = runs.map { "\($0.expression) \($0.scheduled)" }
        #expect(Set(all).count == all.count, "a fire time ran twice: \(all)")
    }

    @Test("CDEvents: a CloudEvent in binary or structured mode starts the pipelines whose type and payload constraints match; the same source and id again starts nothing")
    func cdeventTriggers() async throws {
        try await TestDatabase.with { db in
            let (engine, admin) = try await Self.setUp(db)
            defer { engine.process.terminate() }
            try await Self.save(engine, admin, id: "on-artifact", triggers: #"""
                [{"type": "cdevents", "source": "ci", "enabled": true, "runAsUser": "deployer",
                  "attributeConstraints": {"type": "^dev\\.cdevents\\.artifact\\.packaged\\."}, "payloadConstraints": {"$.subject.id": "^pkg:oci/api"}}]
                """#)
            let event = #"{"context": {"version": "0.4.1", "id": "a-1", "source": "/ci", "type": "dev.cdevents.artifact.packaged.0.2.0", "timestamp": "2026-11-30T12:00:00Z"}, "subject": {"id": "pkg:oci/api@sha256:1", "content": {}}}"#
            let binary = ["ce-specversion": "1.0", "ce-id": "a-1", "ce-source": "/ci", "ce-type": "dev.cdevents.artifact.packaged.0.2.0"]
            let first = try await APIContractTests.call("POST", engine.api + "/webhooks/cdevents/ci", event, admin, headers: binary)
            let id = try #require(first.json["executions"]?.arrayValue?.first?["id"]?.stringValue, "\(first.json)")
            let state = try await engine.finished(id)
            #expect(state.status == .succeeded && state.trigger["cloudEvent"]?["type"] == "dev.cdevents.artifact.packaged.0.2.0"
                    && state.trigger["payload"]?["subject"]?["id"] == "pkg:oci/api@sha256:1", "\(state.trigger)")
            let again = try await APIContractTests.call("POST", engine.api + "/webhooks/cdevents/ci", event, nil, headers: binary)
            #expect(again.json["duplicate"] == true && again.json["executions"]?.arrayValue?.first?["id"]?.stringValue == id, "\(again.json)")

            let other = #"{"specversion": "1.0", "id": "b-2", "source": "/ci", "type": "dev.cdevents.build.finished.0.2.0", "data": {"subject": {"id": "pkg:oci/api"}}}"#
            let structured = try await APIContractTests.call("POST", engine.api + "/webhooks/cdevents/ci", other, admin,
                                                             headers: ["Content-Type": "application/cloudevents+json"])
            #expect(structured.status == 200 && structured.json["executions"]?.arrayValue?.isEmpty == true
                    && structured.json["notMatched"]?.arrayValue?.first?["reason"]?.stringValue?.contains("CloudEvent attribute") == true, "\(structured.json)")
            let missing = try await APIContractTests.call("POST", engine.api + "/webhooks/cdevents/ci", event, nil)
            #expect(missing.status == 400 && missing.json["message"]?.stringValue?.contains("ce-id") == true, "\(missing.json)")
            #expect(try await Self.executions(of: "on-artifact", db).count == 1)
        }
    }

    @Test("pubsub: messages on a Kafka topic that a pubsub trigger subscribes to start the pipeline when they match its constraints, once each")
    func pubsubTriggers() async throws {
        try await TestDatabase.with { db in
            let (engine, admin) = try await Self.setUp(db)
            defer { engine.process.terminate() }
            let topic = engine.prefix + "build-feed"
            try await createTopic(topic, partitions: 1)
            try await Self.save(engine, admin, id: "on-message", triggers: #"""
                [{"type": "pubsub", "pubsubSystem": "kafka", "subscriptionName": "\#(topic)", "enabled": true, "runAsUser": "deployer",
                  "payloadConstraints": {"status": "^green$"}}]
                """#, extra: #", "parameterConfig": [{"name": "version"}]"#)
            try await engine.until(timeout: .seconds(60), "the listener to hold the topic's partition") {
                engine.process.text.contains("pubsub: listening")
            }
            func pubsubReceipts() async throws -> [String] {
                var reasons: [String] = []
                for try await reason in try await db.client.query("""
                    SELECT coalesce(payload->'decisions'->0->>'reason', '') FROM events
                     WHERE event_type = 'trigger.received' AND payload->'origin'->>'kind' = 'pubsub' ORDER BY position
                    """, logger: TestEnvironment.logger).decode(String.self) { reasons.append(reason) }
                return reasons
            }
            let producer = try KafkaProducer(configuration: TestEnvironment.kafka(brokers: nil), logger: TestEnvironment.logger)
            // A new group reads from the end, resolved at its first fetch: a message that does not
            // match is sent until one is recorded, so the listener is known to read.
            try await engine.until(timeout: .seconds(60), "a non-matching message to be recorded with its reason") {
                try await producer.send([KafkaOutgoingMessage(topic: topic, key: Array("a".utf8), value: Array(#"{"status": "red"}"#.utf8))])
                try await Task.sleep(for: .milliseconds(500))
                return !(try await pubsubReceipts()).isEmpty
            }
            let reasons = try await pubsubReceipts()
            #expect(reasons.allSatisfy { $0.contains("'red'") && $0.contains("^green$") }, "\(reasons)")
            try await producer.send([
                KafkaOutgoingMessage(topic: topic, key: Array("a".utf8), value: Array(#"{"status": "green", "parameters": {"version": "9"}}"#.utf8)),
            ])
            await producer.shutdown()
            var started: [String] = []
            try await engine.until("the matching message to start the pipeline") {
                started = try await Self.executions(of: "on-message", db)
                return !started.isEmpty
            }
            let state = try await engine.finished(String(try #require(started.first).dropFirst("execution-".count)))
            #expect(state.status == .succeeded && state.parameters["version"] == "9" && state.trigger["message"]?["topic"]?.stringValue == topic, "\(state.trigger)")
            try await Task.sleep(for: .seconds(1))
            #expect(try await Self.executions(of: "on-message", db).count == 1)
        }
    }

    @Test("a receipt a crash left open (received, its execution not started) is finished by the API's intake: the execution starts once")
    func openReceiptsAreFinished() async throws {
        try await TestDatabase.with { db in
            let (engine, admin) = try await Self.setUp(db)
            defer { engine.process.terminate() }
            try await Self.save(engine, admin, id: "late", triggers: #"[{"type": "webhook", "source": "late", "enabled": true, "runAsUser": "deployer"}]"#)
            // What a process killed right after recording the receipt leaves behind.
            let delivery = try DeliveryParser.webhook(type: "webhook", source: "late", body: Array("{}".utf8), headers: ["idempotency-key": "k"], eventID: "e-late")
            let executionID = delivery.executionID(pipelineID: "late", trigger: 0)
            var fields = delivery.json.objectValue ?? [:]
            fields["decisions"] = [TriggerDecision(pipelineID: "late", application: "shop", pipelineName: "late", triggerIndex: 0, triggerType: "webhook",
                                                   outcome: .start(executionID: executionID)).json]
            _ = try await db.store.append(to: try TriggerIntake.stream(of: delivery.dedupeKey), expected: .noStream, events: [
                NewEvent(type: TriggerIntake.receivedType, payload: try JSONText(encoding: JSONValue.object(fields)), metadata: EventMetadata(source: "test")),
            ])
            let state = try await engine.finished(executionID, timeout: .seconds(60))
            #expect(state.status == .succeeded && state.trigger["eventId"] == "e-late")
            try await engine.until("the receipt to be closed") {
                var closed = false
                for try await _ in try await db.client.query("SELECT 1 FROM events WHERE event_type = 'trigger.processed'", logger: TestEnvironment.logger) { closed = true }
                return closed
            }
            // The sender retries now: the same execution, nothing new.
            let retry = try await APIContractTests.call("POST", engine.api + "/webhooks/webhook/late", "{}", nil, headers: ["Idempotency-Key": "k"])
            #expect(retry.json["executions"]?.arrayValue?.first?["id"]?.stringValue == executionID, "\(retry.json)")
            #expect(try await Self.executions(of: "late", db) == ["execution-\(executionID)"])
        }
    }
}
