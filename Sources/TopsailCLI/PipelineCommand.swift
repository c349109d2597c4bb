import Access
import ArgumentParser
import CLISupport
import EventLog
import Foundation
import PipelineEngine
import Pipelines
import PostgresEventStore

struct PipelineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "Work with Spinnaker pipeline JSON.",
        subcommands: [ValidatePipelineCommand.self, SavePipelineCommand.self, RunPipelineCommand.self]
    )
}

struct ValidatePipelineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check a pipeline before it runs: stage references, cycles, stage types, required fields.",
        discussion: "Prints every problem with the stage and the JSON path at fault and exits 1; prints a summary and exits 0 when the pipeline is valid."
    )

    @Option(name: .shortAndLong, help: "The pipeline JSON file ('-' reads standard input).")
    var file: String

    func run() async throws {
        let json = try PipelineFile.read(file)
        switch PipelineValidation.parse(json, disabledStageTypes: installationDisabledStageTypes()) {
        case .success(let pipeline):
            let graph = StageGraph(pipeline.stages)
            print("valid: \(pipeline.stages.count) stages, starting with \(graph.initialStages.joined(separator: ", "))")
        case .failure(let problems):
            for problem in problems.problems {
                FileHandle.standardError.write(Data("\(file): \(problem)\n".utf8))
            }
            throw ExitCode(1)
        }
    }
}

struct SavePipelineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "save",
        abstract: "Validate a pipeline and save it as the newest version of its id.",
        discussion: """
            Saved pipelines run with `pipeline run --id ID` and as children of `pipeline` stages (their \
            `pipeline` field names the id). The id comes from the JSON's "id" field or --id; each save \
            is a new version and the earlier ones stay in the pipeline's history.
            """
    )

    @OptionGroup var options: CommonOptions
    @OptionGroup var policy: StagePolicyOptions

    @Option(name: .shortAndLong, help: "The pipeline JSON file ('-' reads standard input).")
    var file: String

    @Option(help: "The pipeline's id when the JSON has none (letters, digits, '-', '_', '.'; at most 100).")
    var id: String?

    func run() async throws {
        var pipeline = try PipelineFile.load(file, disabledStageTypes: policy.disabledStageTypes)
        if let id {
            if let existing = pipeline.id, existing != id { throw CLIError("\(file) has id '\(existing)', not '\(id)'") }
            pipeline.json["id"] = .string(id)
        }
        guard let id = pipeline.id, !id.isEmpty else { throw CLIError("\(file) has no \"id\"; give one with --id") }
        let allowed = id.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "-_.".unicodeScalars.contains($0) }
        guard allowed, id.count <= 100 else { throw CLIError("pipeline id '\(id)' may hold letters, digits, '-', '_' and '.' (at most 100)") }
        let database = try options.database()
        let logger = options.logger("topsail.pipeline")
        let user = ProcessInfo.processInfo.environment["USER"] ?? "cli"
        let saved = pipeline
        try await withDatabase(database, logger: logger) { client in
            let version = try await PipelineConfigStore(store: PostgresEventStore(client: client, logger: logger))
                .save(saved, metadata: EventMetadata(actor: user, source: "cli"))
            Output.line("saved pipeline \(id) (\(saved.application ?? "-")/\(saved.name ?? "-")), version \(version)")
        }
    }
}

/// Reading pipeline JSON from a file or standard input.
enum PipelineFile {
    /// Pipelines larger than this are refused before parsing.
    static let maximumBytes = 10 << 20

    static func read(_ file: String) throws -> JSONValue {
        let data: Data
        if file == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else {
            guard let contents = FileManager.default.contents(atPath: file) else {
                throw CLIError("cannot read \(file): no such file or not readable")
            }
            data = contents
        }
        guard data.count <= maximumBytes else {
            throw CLIError("\(file) is \(data.count) bytes, over the limit of \(maximumBytes) bytes for a pipeline")
        }
        do {
            return try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw CLIError("\(file) is not valid JSON")
        }
    }

    /// Reads and validates; every problem becomes one line of the error.
    static func load(_ file: String, disabledStageTypes: Set<String>) throws -> PipelineConfig {
        switch PipelineValidation.parse(try read(file), disabledStageTypes: disabledStageTypes) {
        case .success(let pipeline): return pipeline
        case .failure(let problems): throw CLIError(problems.problems.map { "\(file): \($0)" }.joined(separator: "\n"))
        }
    }
}
