import ArgumentParser
import EventLog
import Foundation
import Pipelines

struct PipelineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "Work with Spinnaker pipeline JSON.",
        subcommands: [ValidatePipelineCommand.self, RunPipelineCommand.self]
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
        switch PipelineValidation.parse(json) {
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
    static func load(_ file: String) throws -> PipelineConfig {
        switch PipelineValidation.parse(try read(file)) {
        case .success(let pipeline): return pipeline
        case .failure(let problems): throw CLIError(problems.problems.map { "\(file): \($0)" }.joined(separator: "\n"))
        }
    }
}
