import ArgumentParser
import EventLog
import Foundation
import Pipelines

struct PipelineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "Work with Spinnaker pipeline JSON.",
        subcommands: [ValidatePipelineCommand.self]
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

    /// Pipelines larger than this are refused before parsing.
    static let maximumBytes = 10 << 20

    func run() async throws {
        let data: Data
        if file == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else {
            guard let contents = FileManager.default.contents(atPath: file) else {
                throw CLIError("cannot read \(file): no such file or not readable")
            }
            data = contents
        }
        guard data.count <= Self.maximumBytes else {
            throw CLIError("\(file) is \(data.count) bytes, over the limit of \(Self.maximumBytes) bytes for a pipeline")
        }
        let json: JSONValue
        do {
            json = try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw CLIError("\(file) is not valid JSON")
        }
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
