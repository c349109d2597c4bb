import Access
import Crypto
import EventLog
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Orchestration
import PipelineEngine
import Pipelines
import Testing

/// The API's contract and limits: its OpenAPI document (validated, and the running server fuzzed
/// from it), configured limits (body size, rate), installation policies, OIDC JWTs, metrics, and
/// PostgreSQL going away under it.
@Suite("HTTP API: contract, limits and outages", .serialized, .timeLimit(.minutes(5)))
struct APIContractTests {
    typealias Engine = EngineTests.Engine
    static func call(_ method: String, _ url: String, _ body: String?, _ token: String?, headers: [String: String] = [:]) async throws -> APITests.Reply {
        try await APITests.call(method, url, body: body, token: token, headers: headers)
    }

    /// The Python tools ops/setup installs (openapi-spec-validator, schemathesis).
    static func tool(_ name: String) throws -> URL {
        let url = TestEnvironment.packageRoot.appendingPathComponent(".topsail/venv/bin/\(name)")
        guard FileManager.default.isExecutableFile(atPath: url.path) else { throw SetupError("\(url.path) is missing: run ops/setup") }
        return url
    }

    static func admin(_ db: TestDatabase, user: String = "root") async throws -> String {
        try await Identities(store: db.store).issue(user: user, name: "tests", roles: ["admin"], metadata: EventMetadata(source: "test")).token
    }

    /// Waits until the engine's API answers its health check.
    static func answering(_ engine: Engine) async throws {
        try await eventually("the API to answer") { (try? await call("GET", engine.api + "/health", nil, nil))?.status == 200 }
    }

    static var judgedText: String { String(decoding: (try? JSONEncoder().encode(judged)) ?? Data(), as: UTF8.self) }

    static let judged: JSONValue = [
        "application": "fuzz", "name": "deploy", "limitConcurrent": false,
        "stages": [["refId": "1", "type": "manualJudgment", "name": "approve"], ["refId": "2", "type": "wait", "waitTime": 1, "requisiteStageRefIds": ["1"]]],
    ]

    @Test("the OpenAPI document is valid, and schemathesis fuzzing the running server from it finds no 5xx and no answer the document does not describe")
    func openAPIDocumentHoldsUnderFuzzing() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db, arguments: ["--rate-limit", "0"])
            defer { engine.process.terminate() }
            let token = try await Self.admin(db)
            try await Self.answering(engine)
            // Something real for the path parameters to name.
            #expect(try await Self.call("POST", engine.api + "/applications",
                                        #"{"name": "fuzz", "email": "team@example.com", "permissions": {"READ": ["viewers"], "WRITE": ["deployers"], "EXECUTE": ["deployers"]}}"#,
                                        token).status == 200)
            // The same fuzzing as a caller who may only read: every refusal must be documented too.
            let viewer = try await Identities(store: db.store).issue(user: "vic", name: "fuzz", roles: ["viewers"], metadata: EventMetadata(source: "test")).token
            let saved = try await Self.call("POST", engine.api + "/pipelines", Self.judgedText, token)
            #expect(saved.status == 200, "\(saved.json)")
            let triggered = try await Self.call("POST", engine.api + "/pipelines/fuzz/deploy", "{}", token)
            let execution = try #require(triggered.json["id"]?.stringValue)

            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("openapi"))
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let document = try await URLSession.shared.data(from: URL(string: engine.api + "/openapi.json")!).0
            let file = directory.appendingPathComponent("openapi.json")
            try document.write(to: file)
            let validated = try await CLITests.run([file.path], executable: try Self.tool("openapi-spec-validator"))
            #expect(validated.status == 0, "\(validated.stdout)\(validated.stderr)")

            // Path parameters name the real execution, application and pipeline; everything else
            // (queries, bodies) is generated. Bounded: a fixed seed and 25 examples an operation.
            let config = directory.appendingPathComponent("schemathesis.toml")
            try """
                [parameters]
                id = "\(execution)"
                application = "fuzz"
                pipelineNameOrId = "deploy"
                stageId = "1"
                """.write(to: config, atomically: true, encoding: .utf8)
            for (who, bearer) in [("admin", token), ("READ-only caller", viewer)] {
                let fuzzed = try await CLITests.run([
                    "--config-file", config.path, "run", engine.api + "/openapi.json",
                    "--header", "Authorization: Bearer \(bearer)",
                    "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                    "--phases", "examples,fuzzing", "--max-examples", "25", "--seed", "7", "--workers", "1",
                    "--request-timeout", "10", "--no-color",
                ], environment: ["HOME": directory.path], executable: try Self.tool("schemathesis"))
                let report = fuzzed.stdout.split(separator: "\n").suffix(60).joined(separator: "\n")
                #expect(fuzzed.status == 0, "schemathesis as \(who):\n\(report)\n\(fuzzed.stderr)")
                #expect(fuzzed.stdout.contains("passed"), "\(who): \(report)")
            }
            #expect(!engine.process.text.contains("request failed"), "the server logged internal failures")
        }
    }

    @Test("configured limits: body size (413), per-caller rate (429 with Retry-After), application creators, disabled script stages")
    func limitsAndPolicies() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db, arguments: [
                "--max-body-bytes", "2048", "--rate-limit", "0.5", "--rate-burst", "5",
                "--application-creator-role", "creators", "--disable-stage-type", "script",
            ])
            defer { engine.process.terminate() }
            let identities = Identities(store: db.store)
            let root = try await Self.admin(db)
            let creator = try await identities.issue(user: "cara", name: nil, roles: ["creators"], metadata: EventMetadata(source: "test")).token
            let other = try await identities.issue(user: "olaf", name: nil, roles: ["dev"], metadata: EventMetadata(source: "test")).token
            try await Self.answering(engine)

            // Body limit, as configured.
            let big = #"{"name": "big", "description": "\#(String(repeating: "x", count: 3000))"}"#
            let tooLarge = try await Self.call("POST", engine.api + "/applications", big, root)
            #expect(tooLarge.status == 413 && tooLarge.json["message"]?.stringValue?.contains("2048 bytes") == true, "\(tooLarge.json)")

            // Only admins and the creators role create applications; updating is WRITE's business.
            let refused = try await Self.call("POST", engine.api + "/applications", #"{"name": "olafs"}"#, other)
            #expect(refused.status == 403 && refused.json["message"]?.stringValue?.contains("creators") == true, "\(refused.json)")
            #expect(try await ApplicationStore(store: db.store).documents.latest("olafs") == nil)
            #expect(try await Self.call("POST", engine.api + "/applications", #"{"name": "caras"}"#, creator).status == 200)

            // Script stages: refused on save with the path, refused on trigger, ended by the worker.
            let scripted = #"{"application": "caras", "name": "s", "stages": [{"refId": "a", "type": "script", "command": "true"}]}"#
            let rejected = try await Self.call("POST", engine.api + "/pipelines", scripted, root)
            #expect(rejected.status == 400 && rejected.json["problems"]?.arrayValue?.first?["path"] == "stages[0].type", "\(rejected.json)")
            try await PipelineConfigStore(store: db.store).save(PipelineConfig(json: [
                "id": "old-script", "application": "caras", "name": "old", "stages": [["refId": "a", "type": "script", "command": "true"]],
            ]), metadata: EventMetadata(source: "test"))
            let notRun = try await Self.call("POST", engine.api + "/pipelines/caras/old", "{}", root)
            #expect(notRun.status == 409 && notRun.json["message"]?.stringValue?.contains("disabled on this installation") == true, "\(notRun.json)")
            let slipped = try await engine.run(["stages": [["refId": "a", "type": "script", "command": "touch /tmp/never"]]])
            let state = try await engine.finished(slipped)
            #expect(state.status == .terminal)
            #expect(state.stage("a").outputs["error"]?.stringValue == PipelineValidation.disabledMessage("script"))

            // Rate: a burst of 5, then 429 with Retry-After (one request every 2 s); another caller is unaffected.
            try await Task.sleep(for: .seconds(3))
            var statuses: [Int] = []
            var retryAfter: String?
            for _ in 0..<8 {
                let reply = try await Self.call("GET", engine.api + "/applications", nil, other)
                statuses.append(reply.status)
                if reply.status == 429 {
                    retryAfter = reply.headers["retry-after"]
                    #expect(reply.json["error"] == "too_many_requests" && reply.json["message"]?.stringValue?.contains("olaf") == true)
                }
            }
            #expect(statuses.prefix(5).allSatisfy { $0 == 200 } && statuses.suffix(2).allSatisfy { $0 == 429 }, "\(statuses)")
            #expect(retryAfter == "1" || retryAfter == "2", "a token every 2 s: \(retryAfter ?? "no Retry-After")")
            #expect(try await Self.call("GET", engine.api + "/applications", nil, creator).status == 200)
            try await Task.sleep(for: .seconds(2.5))
            #expect(try await Self.call("GET", engine.api + "/applications", nil, other).status == 200, "the bucket refills")

            // Deliveries without a token are limited by their address: nobody fills the log with receipts.
            var deliveries: [Int] = []
            for _ in 0..<8 { deliveries.append(try await Self.call("POST", engine.api + "/webhooks/webhook/flood", "{}", nil).status) }
            #expect(deliveries.prefix(5).allSatisfy { $0 == 200 } && deliveries.suffix(2).allSatisfy { $0 == 429 }, "\(deliveries)")
            let flood = try await Self.call("POST", engine.api + "/webhooks/webhook/flood", "{}", nil)
            #expect(flood.status == 429 && flood.json["message"]?.stringValue?.contains("anonymous caller at 127.0.0.1") == true, "\(flood.json)")
            #expect(try await Self.call("GET", engine.api + "/health", nil, nil).status == 200, "health checks are not limited")
        }
    }

    @Test("service accounts: created with the CLI; runAsUser only for callers holding all the account's roles; triggering as one checks its EXECUTE")
    func serviceAccounts() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            let env = ["TOPSAIL_DATABASE_URL": db.url]
            let created = try await CLITests.run(["service-accounts", "create", "deployer", "--roles", "deploy,shop-exec"], environment: env)
            #expect(created.status == 0 && created.stdout.contains("deployer"), "\(created.stderr)")
            #expect(try await CLITests.run(["service-accounts", "create", "bot", "--roles", "other"], environment: env).status == 0)
            let refused = try await CLITests.run(["service-accounts", "create", "-x", "--roles", ""], environment: env)
            #expect(refused.status != 0 && !refused.stderr.isEmpty)
            let identities = Identities(store: db.store)
            let metadata = EventMetadata(source: "test")
            let full = try await identities.issue(user: "dana", name: nil, roles: ["shop-dev", "deploy", "shop-exec"], metadata: metadata).token
            let partial = try await identities.issue(user: "eli", name: nil, roles: ["shop-dev", "shop-exec"], metadata: metadata).token
            let root = try await Self.admin(db)
            try await ApplicationStore(store: db.store).documents.save(
                ["name": "shop", "permissions": ["WRITE": ["shop-dev"], "EXECUTE": ["shop-exec"]]], id: "shop", metadata: metadata)
            try await Self.answering(engine)

            func pipeline(runAs: String) -> String {
                #"{"application": "shop", "name": "nightly", "triggers": [{"type": "cron", "cronExpression": "0 0 2 * * ?", "runAsUser": "\#(runAs)"}], "stages": [{"refId": "1", "type": "wait", "waitTime": 1}]}"#
            }
            let lacking = try await Self.call("POST", engine.api + "/pipelines", pipeline(runAs: "deployer"), partial)
            #expect(lacking.status == 403 && lacking.json["message"]?.stringValue?.contains("lacks the account's role(s) deploy") == true, "\(lacking.json)")
            #expect(try await PipelineLookup(client: db.client, logger: TestEnvironment.logger).all(application: "shop").isEmpty)
            let unknown = try await Self.call("POST", engine.api + "/pipelines", pipeline(runAs: "nobody"), full)
            #expect(unknown.status == 400 && unknown.json["problems"]?.arrayValue?.first?["path"] == "triggers[0].runAsUser", "\(unknown.json)")
            #expect(try await Self.call("POST", engine.api + "/pipelines", pipeline(runAs: "deployer"), full).status == 200)

            // Triggering as the account: allowed for dana, recorded as the account with dana as the actor.
            try await engine.until("the projector to list the pipeline") {
                try await Self.call("GET", engine.api + "/applications/shop/pipelineConfigs/nightly", nil, root).status == 200
            }
            #expect(try await Self.call("POST", engine.api + "/pipelines/shop/nightly", #"{"runAsUser": "deployer"}"#, partial).status == 403)
            let triggered = try await Self.call("POST", engine.api + "/pipelines/shop/nightly", #"{"runAsUser": "deployer"}"#, full)
            #expect(triggered.status == 202, "\(triggered.json)")
            let id = try #require(triggered.json["id"]?.stringValue)
            let view = try await Self.call("GET", engine.api + "/pipelines/\(id)", nil, root)
            #expect(view.json["trigger"]?["user"] == "deployer")
            let timeline = try await Self.call("GET", engine.api + "/pipelines/\(id)/events?limit=1", nil, root)
            #expect(timeline.json["events"]?.arrayValue?.first?["actor"] == "dana")
            // An account without EXECUTE cannot run it, whoever asks.
            let bot = try await Self.call("POST", engine.api + "/pipelines/shop/nightly", #"{"runAsUser": "bot"}"#, root)
            #expect(bot.status == 403 && bot.json["message"]?.stringValue?.hasPrefix("bot may not EXECUTE application shop") == true, "\(bot.json)")
        }
    }

    @Test("tokens and service accounts through the API: admins manage everyone's, others only their own tokens and no roles")
    func identitiesThroughTheAPI() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            let root = try await Self.admin(db)
            try await Self.answering(engine)

            let issued = try await Self.call("POST", engine.api + "/tokens", #"{"user": "kim", "name": "laptop", "roles": ["shop-dev"]}"#, root)
            #expect(issued.status == 201 && issued.json["user"] == "kim", "\(issued.json)")
            let kim = try #require(issued.json["token"]?.stringValue)
            #expect(try await Identities(store: db.store).roles(of: "kim") == ["shop-dev"])
            // Kim's own: a token without roles; not for others, not with roles.
            let own = try await Self.call("POST", engine.api + "/tokens", #"{"name": "ci"}"#, kim)
            #expect(own.status == 201 && own.json["user"] == "kim", "\(own.json)")
            #expect(try await Self.call("POST", engine.api + "/tokens", #"{"user": "root"}"#, kim).status == 403)
            #expect(try await Self.call("POST", engine.api + "/tokens", #"{"roles": ["admin"]}"#, kim).status == 403)
            #expect(try await Identities(store: db.store).roles(of: "kim") == ["shop-dev"], "a refused request changed nothing")
            let bad = try await Self.call("POST", engine.api + "/tokens", #"{"user": "no spaces"}"#, root)
            #expect(bad.status == 400 && bad.json["problems"]?.arrayValue?.first?["path"] == "user", "\(bad.json)")

            let listedByKim = try await Self.call("GET", engine.api + "/tokens", nil, kim)
            #expect(listedByKim.json.arrayValue?.compactMap { $0["user"]?.stringValue } == ["kim", "kim"], "\(listedByKim.json)")
            #expect(!String(describing: listedByKim.json).contains("tsk_"), "listings never show a secret")
            let listedByRoot = try await Self.call("GET", engine.api + "/tokens", nil, root)
            #expect(listedByRoot.json.arrayValue?.count == 3)

            // Revoking: one's own, or any as an admin; the token stops working at once.
            let rootID = try #require(listedByRoot.json.arrayValue?.first { $0["user"] == "root" }?["id"]?.stringValue)
            #expect(try await Self.call("DELETE", engine.api + "/tokens/\(rootID)", nil, kim).status == 403)
            let ownID = try #require(own.json["id"]?.stringValue)
            let ownToken = try #require(own.json["token"]?.stringValue)
            #expect(try await Self.call("GET", engine.api + "/applications", nil, ownToken).status == 200)
            #expect(try await Self.call("DELETE", engine.api + "/tokens/\(ownID)", nil, kim).status == 200)
            #expect(try await Self.call("GET", engine.api + "/applications", nil, ownToken).status == 401)
            #expect(try await Self.call("DELETE", engine.api + "/tokens/\(ownID)", nil, root).status == 404, "already revoked")

            // Service accounts: admins only.
            #expect(try await Self.call("POST", engine.api + "/serviceAccounts", #"{"name": "deployer", "roles": ["deploy"]}"#, kim).status == 403)
            let account = try await Self.call("POST", engine.api + "/serviceAccounts", #"{"name": "deployer", "roles": ["deploy", "deploy"]}"#, root)
            #expect(account.status == 200 && account.json["roles"] == ["deploy"], "\(account.json)")
            #expect(try await Identities(store: db.store).serviceAccount("deployer")?.roles == ["deploy"])
            #expect(try await Self.call("POST", engine.api + "/serviceAccounts", #"{"name": "x", "roles": []}"#, root).status == 400)
        }
    }

    @Test("the CLI through the API (--api, TOPSAIL_TOKEN): acts as the token's user, within its permissions, and says what the server refused")
    func cliThroughTheAPI() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            let identities = Identities(store: db.store)
            let metadata = EventMetadata(source: "test")
            let operatorToken = try await identities.issue(user: "ops", name: nil, roles: ["shop-ops"], metadata: metadata).token
            let viewerToken = try await identities.issue(user: "vic", name: nil, roles: ["shop-view"], metadata: metadata).token
            try await ApplicationStore(store: db.store).documents.save(
                ["name": "shop", "permissions": ["READ": ["shop-view"], "EXECUTE": ["shop-ops"]]], id: "shop", metadata: metadata)
            let id = try await engine.run(["application": "shop", "stages": [["refId": "ok", "type": "manualJudgment"], ["refId": "after", "type": "noop", "requisiteStageRefIds": ["ok"]]]])
            try await engine.until("the judgment to wait") { try await engine.repository.load(id).stage("ok").status == .running }
            // No database URL at all: everything goes through the API.
            let viaAPI = ["TOPSAIL_DATABASE_URL": "", "TOPSAIL_API_URL": engine.api]

            let shown = try await CLITests.run(["executions", "show", id], environment: viaAPI.merging(["TOPSAIL_TOKEN": viewerToken]) { $1 })
            #expect(shown.status == 0 && shown.stdout.contains("execution \(id) RUNNING (shop /") && shown.stdout.contains("ok\tRUNNING\tmanualJudgment"),
                    "\(shown.stdout)\(shown.stderr)")
            let refused = try await CLITests.run(["executions", "judge", id, "--stage", "ok", "--continue"],
                                                 environment: viaAPI.merging(["TOPSAIL_TOKEN": viewerToken]) { $1 })
            #expect(refused.status != 0 && refused.stderr.contains("vic may not EXECUTE application shop") && refused.stderr.contains("HTTP 403"),
                    "\(refused.stderr)")
            let judged = try await CLITests.run(["executions", "judge", id, "--stage", "ok", "--continue", "--token", operatorToken], environment: viaAPI)
            #expect(judged.status == 0, "\(judged.stderr)")
            _ = try await engine.finished(id)
            let audit = try await CLITests.run(["audit", "--application", "shop", "--type", "execution.stage.completed", "--api", engine.api, "--token", operatorToken],
                                               environment: ["TOPSAIL_DATABASE_URL": ""])
            let line = try JSONDecoder().decode(JSONValue.self, from: Data((audit.stdout.split(separator: "\n").first ?? "").utf8))
            #expect(line["actor"] == "ops" && line["source"] == "api", "\(audit.stdout)\(audit.stderr)")
            let missing = try await CLITests.run(["executions", "pause", id], environment: viaAPI)
            #expect(missing.status != 0 && missing.stderr.contains("TOPSAIL_TOKEN"), "\(missing.stderr)")
            let away = try await CLITests.run(["executions", "show", id, "--api", "http://127.0.0.1:1", "--token", operatorToken], environment: viaAPI)
            #expect(away.status != 0 && away.stderr.contains("cannot reach the API at http://127.0.0.1:1"), "\(away.stderr)")

            // Pipelines as code through the API: apply as a writer (twice: nothing changes), export back, refused for a reader.
            let writerToken = try await identities.issue(user: "wes", name: nil, roles: ["shop-ops", "shop-dev"], metadata: metadata).token
            var shop = try await ApplicationStore(store: db.store).documents.latest("shop")?.document.objectValue ?? [:]
            shop["permissions"] = ["READ": ["shop-view"], "WRITE": ["shop-dev"], "EXECUTE": ["shop-ops"]]
            try await ApplicationStore(store: db.store).documents.save(.object(shop), id: "shop", metadata: metadata)
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("apply"))
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let file = directory.appendingPathComponent("deploy.yaml")
            try """
                application: shop
                name: deploy
                stages:
                  - refId: "1"
                    type: wait
                    waitTime: 5
                """.write(to: file, atomically: true, encoding: .utf8)
            let asWriter = viaAPI.merging(["TOPSAIL_TOKEN": writerToken]) { $1 }
            let applied = try await CLITests.run(["apply", "-f", file.path], environment: asWriter)
            #expect(applied.status == 0 && applied.stdout.contains("pipeline shop/deploy") && applied.stdout.contains("1 created"), "\(applied.stdout)\(applied.stderr)")
            let again = try await CLITests.run(["apply", "-f", file.path], environment: asWriter)
            #expect(again.status == 0 && again.stdout.contains("1 unchanged"), "\(again.stdout)\(again.stderr)")
            let saved = try #require(try await PipelineLookup(client: db.client, logger: TestEnvironment.logger).find(application: "shop", nameOrID: "deploy"))
            let history = try await PipelineConfigStore(store: db.store).history(saved.id ?? "")
            #expect(history.count == 1 && history.first?.actor == "wes" && history.first?.source == "api", "one version, saved by wes through the API")
            try await engine.until("the listing to show the pipeline") {
                let exported = try await CLITests.run(["export", "shop"], environment: asWriter)
                return exported.status == 0 && exported.stdout.contains("\"name\" : \"deploy\"")
            }
            try """
                application: shop
                name: deploy
                stages:
                  - refId: "1"
                    type: wait
                    waitTime: 9
                """.write(to: file, atomically: true, encoding: .utf8)
            let byReader = try await CLITests.run(["apply", "-f", file.path], environment: viaAPI.merging(["TOPSAIL_TOKEN": viewerToken]) { $1 })
            #expect(byReader.status != 0 && byReader.stderr.contains("vic may not WRITE application shop") && byReader.stderr.contains("HTTP 403"), "\(byReader.stderr)")
        }
    }

    @Test("timeline, correlation and causation ids, expression evaluation and metrics of a triggered execution")
    func timelineExpressionsMetrics() async throws {
        try await TestDatabase.with { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            let root = try await Self.admin(db)
            try await Self.answering(engine)
            _ = try await Self.call("POST", engine.api + "/pipelines", Self.judgedText, root)
            let trigger = try await Self.call("POST", engine.api + "/pipelines/fuzz/deploy", #"{"user": "ci-bot"}"#, root, headers: ["X-Correlation-Id": "release-42"])
            let id = try #require(trigger.json["id"]?.stringValue)
            let requestID = try #require(trigger.headers["x-request-id"])
            try await engine.until("the judgment to wait") { try await engine.repository.load(id).stage("1").status == .running }

            let timeline = try await Self.call("GET", engine.api + "/pipelines/\(id)/events?limit=2", nil, root)
            let events = try #require(timeline.json["events"]?.arrayValue)
            #expect(events.map { $0["type"]?.stringValue } == ["execution.triggered", "execution.started"], "\(timeline.json)")
            #expect(events.first?["actor"] == "root" && events.first?["source"] == "api")
            // The client's correlation id and this request's id (the cause) travel with the event.
            #expect(events.first?["correlationId"] == "release-42" && events.first?["causationId"] == .string(requestID), "\(events.first ?? .null)")
            let next = try #require(timeline.json["next"]?.intValue)
            let rest = try await Self.call("GET", engine.api + "/pipelines/\(id)/events?after=\(next)", nil, root)
            #expect(rest.json["events"]?.arrayValue?.first?["version"]?.intValue == 3, "\(rest.json)")
            #expect(try await Self.call("GET", engine.api + "/pipelines/nope/events", nil, root).status == 404)

            let expression = "${trigger.user} asks ${#stage('approve').status}"
            let encoded = expression.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
            let evaluated = try await Self.call("GET", engine.api + "/pipelines/\(id)/evaluateExpression?expression=\(encoded)", nil, root)
            #expect(evaluated.json["result"] == "root asks RUNNING", "the trigger's user is the caller, not the body's: \(evaluated.json)")
            let failed = try await Self.call("POST", engine.api + "/pipelines/\(id)/evaluateExpression", #"{"expression": "${nothing.here}"}"#, root)
            #expect(failed.status == 200 && failed.json["result"] == .null && failed.json["error"]?.stringValue?.isEmpty == false, "\(failed.json)")

            let metrics = try await Self.call("GET", engine.api + "/metrics", nil, nil)
            let text = metrics.json.stringValue ?? ""
            #expect(metrics.status == 200 && metrics.headers["content-type"]?.hasPrefix("text/plain") == true)
            #expect(text.contains(#"hb_requests{http_route="/pipelines/{id}/events",http_request_method="GET",http_response_status_code="200"} 2"#), "\(text.prefix(2000))")
            #expect(text.contains(#"topsail_executions_triggered_total{source="api"} 1"#))
            #expect(text.contains("topsail_execution_events_appended_total{source=\"orchestrator\"}"))
        }
    }

    @Test("bearer JWTs from the configured OIDC issuer: user and groups from the claims; wrong audience, issuer, key or an expired token get 401")
    func oidcBearerTokens() async throws {
        let issuer = try TestIssuer()
        defer { issuer.remove() }
        let stranger = P256.Signing.PrivateKey()
        @Sendable func jwt(_ claims: [String: JSONValue], key: P256.Signing.PrivateKey? = nil) throws -> String { try issuer.jwt(claims, key: key) }
        try await TestDatabase.with { db in
            let engine = try Engine(db, arguments: ["--oidc-issuer", issuer.issuer, "--oidc-audience", "topsail", "--oidc-jwks", issuer.keys.path])
            defer { engine.process.terminate() }
            try await ApplicationStore(store: db.store).documents.save(
                ["name": "shop", "permissions": ["READ": ["shop-readers"]]], id: "shop", metadata: EventMetadata(source: "test"))
            try await Self.answering(engine)

            let reader = try jwt(["preferred_username": "jo", "groups": ["shop-readers"]])
            let allowed = try await Self.call("GET", engine.api + "/applications/shop", nil, reader)
            #expect(allowed.status == 200, "\(allowed.json)")
            // The listing is the read model's, which follows the log a moment behind.
            try await engine.until("the listing to show the application") {
                let listed = try await Self.call("GET", engine.api + "/applications", nil, reader)
                return listed.json.arrayValue?.compactMap { $0["name"]?.stringValue } == ["shop"]
            }
            // Without the group: 403 naming the role; the user is sub when preferred_username is absent.
            let outsider = try await Self.call("GET", engine.api + "/applications/shop", nil, try jwt(["groups": ["other"]]))
            #expect(outsider.status == 403 && outsider.json["message"]?.stringValue?.hasPrefix("oidc:u-1 may not READ") == true, "\(outsider.json)")

            for (what, token, expected) in [
                ("audience", try jwt(["aud": "someone-else"]), "not for audience topsail"),
                ("issuer", try jwt(["iss": "https://evil.example.com"]), "not https://login.example.com"),
                ("key", try jwt([:], key: stranger), "not valid"),
                ("expiry", try jwt(["exp": .number(Date().timeIntervalSince1970 - 60)]), "not valid"),
            ] {
                let reply = try await Self.call("GET", engine.api + "/applications", nil, token)
                #expect(reply.status == 401 && reply.json["message"]?.stringValue?.contains(expected) == true, "\(what): \(reply.json)")
            }
            // Identities are namespaced by where they come from: an OIDC user called like a
            // service account (here an admin one) or a Topsail user gets none of its roles or tokens.
            try await Identities(store: db.store).saveServiceAccount("deployer", roles: ["admin"], metadata: EventMetadata(source: "test"))
            _ = try await Identities(store: db.store).issue(user: "jo", name: "jo's own", roles: ["shop-readers"], metadata: EventMetadata(source: "test"))
            let namesake = try jwt(["preferred_username": "deployer"])
            let posing = try await Self.call("GET", engine.api + "/applications/shop", nil, namesake)
            #expect(posing.status == 403 && posing.json["message"]?.stringValue?.hasPrefix("oidc:deployer may not READ") == true, "\(posing.json)")
            let tokens = try await Self.call("GET", engine.api + "/tokens", nil, reader)
            #expect(tokens.status == 200 && tokens.json.arrayValue?.isEmpty == true, "oidc:jo sees jo's tokens: \(tokens.json)")
            let minted = try await Self.call("POST", engine.api + "/tokens", "{}", reader)
            #expect(minted.status == 403, "\(minted.json)")
            let forJo = try await Self.call("POST", engine.api + "/tokens", #"{"user": "jo"}"#, reader)
            #expect(forJo.status == 403, "oidc:jo issued a token for jo: \(forJo.json)")

            // API tokens still work beside JWTs.
            #expect(try await Self.call("GET", engine.api + "/applications", nil, try await Self.admin(db)).status == 200)
        }
    }

    @Test("PostgreSQL stopped under topsail all: the API answers 503 with a JSON body and /ready false, /health stays up; started again: the API and the engine recover by themselves")
    func postgresStoppedAndStarted() async throws {
        let server = try await PrivatePostgres.start()
        // Stop the private server and remove its files whatever happened.
        defer { server.remove() }
        @Sendable func postgres(_ action: String) async throws { try await server.run(action) }
        try await TestDatabase.with(serverURL: server.url) { db in
            let engine = try Engine(db)
            defer { engine.process.terminate() }
            let root = try await Self.admin(db)
            let id = try await engine.run(["stages": [["refId": "1", "type": "manualJudgment"]]])
            try await eventually("the API to answer") { (try? await Self.call("GET", engine.api + "/ready", nil, nil))?.status == 200 }
            #expect(try await Self.call("GET", engine.api + "/pipelines/\(id)", nil, root).status == 200)

            try await postgres("stop")
            try await eventually("reads to answer 503") {
                let reply = try await Self.call("GET", engine.api + "/pipelines/\(id)", nil, root)
                return reply.status == 503 && reply.json["error"] == "unavailable"
            }
            let unready = try await Self.call("GET", engine.api + "/ready", nil, nil)
            #expect(unready.status == 503 && unready.json["message"]?.stringValue?.contains("PostgreSQL") == true, "\(unready.json)")
            #expect(try await Self.call("GET", engine.api + "/health", nil, nil).status == 200)
            let write = try await Self.call("PUT", engine.api + "/pipelines/\(id)/cancel", nil, root)
            #expect(write.status == 503, "\(write.json)")
            #expect(!String(describing: write.json).contains("PSQL"), "no driver detail reaches the client: \(write.json)")

            try await postgres("start")
            try await eventually(timeout: .seconds(60), "the API to recover") {
                (try? await Self.call("GET", engine.api + "/ready", nil, nil))?.status == 200
            }
            let canceled = try await Self.call("PUT", engine.api + "/pipelines/\(id)/cancel", nil, root)
            #expect(canceled.status == 200 && canceled.json["status"] == "CANCELED", "\(canceled.json)")
            #expect(engine.process.isRunning, "the server stayed up")
            // The other roles came back too: a new execution runs to the end.
            let after = try await engine.run(["stages": [["refId": "1", "type": "noop"], ["refId": "2", "type": "noop", "requisiteStageRefIds": ["1"]]]])
            #expect(try await engine.finished(after, timeout: .seconds(120)).status == .succeeded)
        }
    }
}
