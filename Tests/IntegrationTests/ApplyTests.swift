import Access
import EventLog
import Foundation
import PipelineEngine
import Pipelines
import Testing

@Suite("Pipelines as code: apply and export", .timeLimit(.minutes(5)))
struct ApplyTests {
    static func write(_ files: [String: String]) throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("config-"))
        for (name, text) in files {
            let url = directory.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
        }
        return directory
    }

    @Test("apply creates, then updates only what changed; export writes files that apply takes back unchanged (JSON and YAML)")
    func applyAndExport() async throws {
        try await TestDatabase.with { db in
            let env = ["TOPSAIL_DATABASE_URL": db.url]
            let directory = try Self.write([
                "shop/application.yaml": "kind: application\nname: shop\nemail: team@example.com\nattributes:\n  tier: 1\n",
                "shop/build.json": #"{"application": "shop", "name": "build", "limitConcurrent": false, "stages": [{"refId": "1", "type": "noop"}]}"#,
                "shop/deploy.yaml": """
                    application: shop
                    name: deploy
                    keepWaitingPipelines: true
                    stages:
                      - refId: soak
                        type: wait
                        waitTime: 30
                      - refId: go
                        type: script
                        command: echo go
                        requisiteStageRefIds: [soak]
                    """,
            ])
            defer { try? FileManager.default.removeItem(at: directory) }
            let first = try await CLITests.run(["apply", "-f", directory.path], environment: env)
            #expect(first.status == 0, "\(first.stderr)")
            #expect(first.stdout.contains("application shop: created (version 1)"))
            #expect(first.stdout.hasSuffix("3 created\n"), "\(first.stdout)")
            let again = try await CLITests.run(["apply", "-f", directory.path], environment: env)
            #expect(again.stdout.hasSuffix("3 unchanged\n"), "applying twice changes nothing: \(again.stdout)")

            try #"{"application": "shop", "name": "build", "limitConcurrent": false, "stages": [{"refId": "1", "type": "noop", "name": "Build"}]}"#
                .write(to: directory.appendingPathComponent("shop/build.json"), atomically: true, encoding: .utf8)
            let dry = try await CLITests.run(["apply", "-f", directory.path, "--dry-run"], environment: env)
            #expect(dry.stdout.contains("would be updated") && dry.stdout.contains("2 unchanged"), "\(dry.stdout)")
            let changed = try await CLITests.run(["apply", "-f", directory.path], environment: env)
            #expect(changed.stdout.contains("pipeline shop/build (") && changed.stdout.contains("): updated (version 2)"), "\(changed.stdout)")
            #expect(changed.stdout.hasSuffix("2 unchanged, 1 updated\n"), "\(changed.stdout)")
            let saved = try #require(try await PipelineLookup(client: db.client, logger: TestEnvironment.logger).find(application: "shop", nameOrID: "deploy"))
            #expect(saved.stage("soak")?.json["waitTime"] == 30)
            #expect(saved.keepWaitingPipelines)

            for yaml in [false, true] {
                let out = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("export-"))
                defer { try? FileManager.default.removeItem(at: out) }
                let exported = try await CLITests.run(["export", "shop", "--output", out.path] + (yaml ? ["--yaml"] : []), environment: env)
                #expect(exported.status == 0 && exported.stdout.split(separator: "\n").count == 3, "\(exported.stdout)\(exported.stderr)")
                let back = try await CLITests.run(["apply", "-f", out.path], environment: env)
                #expect(back.stdout.hasSuffix("3 unchanged\n"), "an export applies back unchanged (yaml: \(yaml)): \(back.stdout)\(back.stderr)")
            }
        }
    }

    @Test("invalid documents are all reported with file and path, and nothing is saved")
    func invalidDocuments() async throws {
        try await TestDatabase.with { db in
            let env = ["TOPSAIL_DATABASE_URL": db.url]
            let directory = try Self.write([
                "a.json": #"{"application": "shop", "name": "ok", "stages": [{"refId": "1", "type": "noop"}]}"#,
                "b.json": #"{"application": "shop", "name": "bad", "stages": [{"refId": "1", "type": "teleport"}]}"#,
                "c.yaml": "kind: application\nname: Not Valid\n",
                "d.yaml": "name: 'unterminated\n",
            ])
            defer { try? FileManager.default.removeItem(at: directory) }
            let outcome = try await CLITests.run(["apply", "-f", directory.path], environment: env)
            #expect(outcome.status == 1)
            #expect(outcome.stderr.contains("d.yaml is not valid YAML"), "\(outcome.stderr)")
            let partial = try await CLITests.run(["apply", "-f", directory.appendingPathComponent("b.json").path], environment: env)
            #expect(partial.status == 1 && partial.stderr.contains("b.json: stage '1' (stages[0].type)"), "\(partial.stderr)")
            try FileManager.default.removeItem(at: directory.appendingPathComponent("d.yaml"))
            let both = try await CLITests.run(["apply", "-f", directory.path], environment: env)
            #expect(both.stderr.contains("b.json") && both.stderr.contains("c.yaml"), "every problem is reported: \(both.stderr)")
            #expect(try await PipelineLookup(client: db.client, logger: TestEnvironment.logger).all(application: "shop").isEmpty, "nothing was saved")
        }
    }
}
