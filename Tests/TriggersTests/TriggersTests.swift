import Access
import Crypto
import EventLog
import Foundation
import Pipelines
import Testing
@testable import Triggers

@Suite("Triggers: payload constraints, deliveries, matching, signatures and sealed secrets")
struct TriggersTests {
    static func json(_ text: String) throws -> JSONValue { try JSONText(text).decode(JSONValue.self) }

    @Test func payloadConstraintsFindRegexesInTopLevelKeysAndJSONPaths() throws {
        let payload = try Self.json(#"{"env": "production-eu", "build": {"tags": ["a", "release-7"], "number": 42}, "ok": true}"#)
        #expect(PayloadConstraints.mismatch(["env": "prod"], payload: payload) == nil, "a partial match is enough (find)")
        #expect(PayloadConstraints.mismatch(["env": "^staging"], payload: payload)?.contains("does not match ^staging") == true)
        #expect(PayloadConstraints.mismatch(["$.build.number": "^42$"], payload: payload) == nil, "numbers match as written")
        #expect(PayloadConstraints.mismatch(["build.tags[*]": "^release-\\d+$"], payload: payload) == nil, "any result of a path may match")
        #expect(PayloadConstraints.mismatch(["$..number": "4"], payload: payload) == nil)
        #expect(PayloadConstraints.mismatch(["ok": "true"], payload: payload) == nil)
        #expect(PayloadConstraints.mismatch(["$.build.branch": "main"], payload: payload)?.contains("has no") == true)
        #expect(PayloadConstraints.mismatch(["env": "("], payload: payload)?.contains("not a valid regular expression") == true)
        #expect(PayloadConstraints.problems(["env": "("]) == ["payloadConstraints.env is not a valid regular expression: ("])
        #expect(PayloadConstraints.problems(["env": 3]).count == 1)
    }

    @Test func gitDeliveriesFromEachProvider() throws {
        let github = try #require(try DeliveryParser.git(
            provider: "github", body: Array(#"{"ref": "refs/heads/main", "after": "abc123", "repository": {"name": "api", "owner": {"login": "acme", "name": "acme"}}}"#.utf8),
            headers: ["x-github-event": "push", "x-github-delivery": "d-1"], eventID: "e"))
        guard case .git(let event) = github.origin else { Issue.record("not git"); return }
        #expect(event == GitEvent(provider: "github", project: "acme", slug: "api", branch: "main", hash: "abc123", action: "push"))
        #expect(github.dedupeKey == "git/github/d-1")
        #expect(try DeliveryParser.git(provider: "github", body: Array(#"{"zen": "x"}"#.utf8), headers: ["x-github-event": "ping"], eventID: "e") == nil)

        let gitlab = try #require(try DeliveryParser.git(
            provider: "gitlab", body: Array(#"{"object_kind": "push", "ref": "refs/heads/dev", "checkout_sha": "f00", "project": {"namespace": "grp", "path": "web", "name": "Web"}}"#.utf8),
            headers: ["x-gitlab-event-uuid": "u-9"], eventID: "e"))
        guard case .git(let lab) = gitlab.origin else { Issue.record("not git"); return }
        #expect(lab == GitEvent(provider: "gitlab", project: "grp", slug: "web", branch: "dev", hash: "f00", action: "push"))
        #expect(gitlab.dedupeKey == "git/gitlab/u-9")

        let bitbucket = try #require(try DeliveryParser.git(
            provider: "bitbucket", body: Array(#"{"repository": {"full_name": "team/repo"}, "push": {"changes": [{"new": {"name": "main", "target": {"hash": "beef"}}}]}}"#.utf8),
            headers: ["x-event-key": "repo:push"], eventID: "e"))
        guard case .git(let bucket) = bitbucket.origin else { Issue.record("not git"); return }
        #expect(bucket == GitEvent(provider: "bitbucket", project: "team", slug: "repo", branch: "main", hash: "beef", action: "repo:push"))
        #expect(bitbucket.dedupeKey == "event/e", "without a delivery id every delivery is new")

        #expect(throws: DeliveryError.self) { try DeliveryParser.git(provider: "github", body: Array("[1]".utf8), headers: [:], eventID: "e") }
        #expect(throws: DeliveryError.self) { try DeliveryParser.git(provider: "svn", body: Array("{}".utf8), headers: [:], eventID: "e") }
    }

    @Test func buildsFromJenkinsAndTheGenericJSON() throws {
        let jenkins = try DeliveryParser.build(master: "ci", body: Array(#"""
            {"name": "api-build", "url": "job/api-build/", "build": {"full_url": "http://ci/job/api-build/7/", "number": 7, "phase": "COMPLETED",
             "status": "SUCCESS", "scm": {"url": "git@x:api.git", "branch": "origin/main", "commit": "c0ffee"}, "parameters": {"VERSION": "1.2"},
             "artifacts": {"api.tgz": {"archive": "http://ci/job/api-build/7/artifact/api.tgz"}}}}
            """#.utf8), headers: [:], eventID: "e1")
        guard case .build(let build) = jenkins.origin else { Issue.record("not a build"); return }
        #expect(build.job == "api-build" && build.number == 7 && !build.building && build.result == "SUCCESS")
        #expect(build.info["scm"]?.arrayValue?.first?["sha1"] == "c0ffee")
        #expect(build.properties["VERSION"] == "1.2")
        #expect(jenkins.dedupeKey == "build/ci/api-build/7", "a finished build is one receipt however often it is told")

        let started = try DeliveryParser.build(master: "ci", body: Array(#"{"name": "api-build", "build": {"number": 7, "phase": "STARTED"}}"#.utf8), headers: [:], eventID: "e2")
        guard case .build(let running) = started.origin else { Issue.record("not a build"); return }
        #expect(running.building && started.dedupeKey != jenkins.dedupeKey, "a build's start does not take its finish's key")

        let generic = try DeliveryParser.build(master: "gha", body: Array(#"{"job": "web", "number": 3, "result": "success", "properties": {"IMAGE": "web:3"}}"#.utf8),
                                               headers: [:], eventID: "e3")
        guard case .build(let plain) = generic.origin else { Issue.record("not a build"); return }
        #expect(plain.result == "SUCCESS" && !plain.building && plain.properties["IMAGE"] == "web:3")
        #expect(throws: DeliveryError("result DONE is not one of SUCCESS, UNSTABLE, BUILDING, ABORTED, FAILURE, NOT_BUILT")) {
            try DeliveryParser.build(master: "gha", body: Array(#"{"job": "web", "number": 3, "result": "done"}"#.utf8), headers: [:], eventID: "e")
        }
        #expect(throws: DeliveryError.self) { try DeliveryParser.build(master: "gha", body: Array(#"{"job": "web"}"#.utf8), headers: [:], eventID: "e") }
    }

    static func pipeline(_ id: String, triggers: String, extra: String = "") throws -> PipelineConfig {
        PipelineConfig(json: try Self.json(#"{"id": "\#(id)", "application": "app", "name": "\#(id)", "stages": [], "triggers": \#(triggers)\#(extra)}"#).objectValue!)
    }

    @Test func webhookTriggersMatchOnSourceAndConstraintsAndSayWhyNot() throws {
        let delivery = try DeliveryParser.webhook(type: "webhook", source: "deploys", body: Array(#"{"env": "prod", "parameters": {"v": "1"}}"#.utf8),
                                                  headers: ["idempotency-key": "k1"], eventID: "e")
        let pipelines = [
            try Self.pipeline("fires", triggers: #"[{"type": "webhook", "source": "deploys", "enabled": true, "payloadConstraints": {"env": "prod"}}]"#),
            try Self.pipeline("other-env", triggers: #"[{"type": "webhook", "source": "deploys", "enabled": true, "payloadConstraints": {"env": "staging"}}]"#),
            try Self.pipeline("off", triggers: #"[{"type": "webhook", "source": "deploys"}]"#),
            try Self.pipeline("disabled", triggers: #"[{"type": "webhook", "source": "deploys", "enabled": true}]"#, extra: #", "disabled": true"#),
            try Self.pipeline("elsewhere", triggers: #"[{"type": "webhook", "source": "builds", "enabled": true}]"#),
        ]
        let considered = TriggerDecider.consider(delivery, pipelines: pipelines)
        let byPipeline = Dictionary(uniqueKeysWithValues: considered.map { ($0.decision.pipelineID, $0.decision.outcome) })
        #expect(byPipeline.count == 4, "a trigger for another source does not listen: \(byPipeline.keys.sorted())")
        #expect(byPipeline["fires"] == .start(executionID: delivery.executionID(pipelineID: "fires", trigger: 0)))
        guard case .notMatched(let reason, false) = byPipeline["other-env"] else { Issue.record("other-env fired"); return }
        #expect(reason.contains("staging"))
        #expect(byPipeline["off"] == .notMatched(reason: "the trigger is not enabled (enabled is not true)", refused: false))
        #expect(byPipeline["disabled"] == .notMatched(reason: "the pipeline is disabled", refused: false))
        // A retry of the delivery (same key) derives the same execution id; another key another.
        let again = try DeliveryParser.webhook(type: "webhook", source: "deploys", body: Array("{}".utf8), headers: ["idempotency-key": "k1"], eventID: "e2")
        let other = try DeliveryParser.webhook(type: "webhook", source: "deploys", body: Array("{}".utf8), headers: ["idempotency-key": "k2"], eventID: "e3")
        #expect(again.executionID(pipelineID: "fires", trigger: 0) == delivery.executionID(pipelineID: "fires", trigger: 0))
        #expect(other.executionID(pipelineID: "fires", trigger: 0) != delivery.executionID(pipelineID: "fires", trigger: 0))
        #expect(UUID(uuidString: delivery.executionID(pipelineID: "fires", trigger: 0)) != nil)

        let trigger = TriggerDecider.executionTrigger(["type": "webhook", "source": "deploys", "secret": "s3cret", "enabled": true], delivery: delivery,
                                                      user: "ci-bot", parameters: ["v": "1"])
        #expect(trigger["secret"] == nil, "a trigger's secret never reaches the execution")
        #expect(trigger["eventId"] == "e" && trigger["payload"]?["env"] == "prod" && trigger["parameters"]?["v"] == "1" && trigger["user"] == "ci-bot")
        #expect(Delivery(json: delivery.json) == delivery, "a receipt keeps the delivery whole")
    }

    @Test func gitTriggersMatchProjectSlugTheWholeBranchAndEvents() throws {
        let push = try #require(try DeliveryParser.git(
            provider: "github", body: Array(#"{"ref": "refs/heads/release/1.2", "after": "abc", "repository": {"name": "api", "owner": {"login": "acme"}}}"#.utf8),
            headers: ["x-github-event": "push", "x-github-delivery": "d"], eventID: "e"))
        func outcome(_ trigger: String) throws -> TriggerDecision.Outcome? {
            TriggerDecider.consider(push, pipelines: [try Self.pipeline("p", triggers: "[\(trigger)]")]).first?.decision.outcome
        }
        let base = #""type": "git", "source": "github", "enabled": true, "project": "acme", "slug": "api""#
        #expect(try outcome("{\(base), \"branch\": \"release/.*\"}")?.isStart == true)
        #expect(try outcome("{\(base), \"branch\": \"release\"}")?.isStart == false, "the branch must match whole, not in part")
        #expect(try outcome("{\(base), \"branch\": \"release/.*\", \"events\": [\"push\"]}")?.isStart == true)
        #expect(try outcome("{\(base), \"events\": [\"pull_request\"]}")?.isStart == false)
        #expect(try outcome(#"{"type": "git", "source": "github", "enabled": true, "project": "other", "slug": "api"}"#)?.isStart == false)
        #expect(try outcome(#"{"type": "git", "source": "gitlab", "enabled": true}"#) == nil, "a trigger for another provider does not listen")
    }

    @Test func ciTriggersFireOnlyForAFinishedSuccessfulBuildOfTheirJob() throws {
        func delivery(_ body: String) throws -> Delivery { try DeliveryParser.build(master: "ci", body: Array(body.utf8), headers: [:], eventID: "e") }
        let pipeline = try Self.pipeline("p", triggers: #"[{"type": "jenkins", "master": "ci", "job": "api", "enabled": true, "payloadConstraints": {"IMAGE": "^api:"}}]"#)
        func outcome(_ body: String) throws -> TriggerDecision.Outcome? {
            TriggerDecider.consider(try delivery(body), pipelines: [pipeline]).first?.decision.outcome
        }
        #expect(try outcome(#"{"job": "api", "number": 1, "result": "SUCCESS", "properties": {"IMAGE": "api:1"}}"#)?.isStart == true)
        #expect(try outcome(#"{"job": "api", "number": 1, "result": "FAILURE", "properties": {"IMAGE": "api:1"}}"#)?.isStart == false)
        #expect(try outcome(#"{"job": "api", "number": 1, "result": "BUILDING", "building": true}"#)?.isStart == false)
        #expect(try outcome(#"{"job": "web", "number": 1, "result": "SUCCESS"}"#)?.isStart == false)
        #expect(try outcome(#"{"job": "api", "number": 1, "result": "SUCCESS", "properties": {"IMAGE": "web:1"}}"#)?.isStart == false)
        let built = try delivery(#"{"job": "api", "number": 9, "result": "SUCCESS", "url": "http://ci/9", "properties": {"IMAGE": "api:9"}}"#)
        let trigger = TriggerDecider.executionTrigger(["type": "jenkins", "master": "ci", "job": "api"], delivery: built, user: "anonymous", parameters: [:])
        #expect(trigger["buildNumber"] == 9 && trigger["buildInfo"]?["url"] == "http://ci/9" && trigger["properties"]?["IMAGE"] == "api:9")
    }

    @Test func signaturesAreCheckedAgainstTheRawBody() {
        let body = Array(#"{"ref": "refs/heads/main"}"#.utf8)
        let key = SymmetricKey(data: Array("topsecret".utf8))
        let sha256 = "sha256=" + Signatures.hex(HMAC<SHA256>.authenticationCode(for: body, using: key))
        let sha1 = "sha1=" + Signatures.hex(HMAC<Insecure.SHA1>.authenticationCode(for: body, using: key))
        #expect(Signatures.verify(.init(hubSignature256: sha256), body: body, secret: "topsecret") == .valid)
        #expect(Signatures.verify(.init(hubSignature: sha1), body: body, secret: "topsecret") == .valid)
        #expect(!Signatures.verify(.init(hubSignature256: sha256), body: body + [0x20], secret: "topsecret").isValid, "a changed body fails")
        #expect(!Signatures.verify(.init(hubSignature256: sha256), body: body, secret: "other").isValid)
        #expect(Signatures.verify(.init(gitlabToken: "topsecret"), body: body, secret: "topsecret") == .valid)
        #expect(!Signatures.verify(.init(token: "topsecre"), body: body, secret: "topsecret").isValid)
        guard case .missing = Signatures.verify(.init(), body: body, secret: "topsecret") else { Issue.record("no proof passed"); return }
    }

    @Test func triggerSecretsAreSealedAndOpenOnlyWithTheKey() throws {
        let key = Data((0..<32).map { UInt8($0) }).base64EncodedString()
        let seal = try SecretSeal(base64: key)
        let pipeline: [String: JSONValue] = ["triggers": [["type": "git", "secret": "hunter22"], ["type": "cron"]]]
        let sealed = try seal.sealingTriggerSecrets(of: pipeline)
        let secret = try #require(sealed["triggers"]?.arrayValue?.first?["secret"]?.stringValue)
        #expect(SecretSeal.isSealed(secret) && !secret.contains("hunter22"))
        #expect(try seal.open(secret) == "hunter22")
        #expect(try seal.sealingTriggerSecrets(of: sealed) == sealed, "a sealed secret is kept as it is")
        #expect(SecretSeal.hasPlainTriggerSecrets(pipeline) && !SecretSeal.hasPlainTriggerSecrets(sealed))
        let other = try SecretSeal(base64: Data(repeating: 7, count: 32).base64EncodedString())
        #expect(throws: SecretSeal.Failure.self) { try other.open(secret) }
        #expect(throws: SecretSeal.Failure.self) { try SecretSeal(base64: "short") }
    }
}

extension TriggerDecision.Outcome {
    var isStart: Bool { if case .start = self { true } else { false } }
}
