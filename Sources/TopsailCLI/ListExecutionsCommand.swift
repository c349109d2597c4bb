import API
import ArgumentParser
import CLISupport
import Foundation
import PipelineEngine
import Pipelines
import ReadModels

struct ListExecutionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List executions, newest first, from the read model.",
        discussion: """
            Reads the executions read model kept by the projector role (part of topsail all), so it \
            lags the log by the projector's poll; `executions show ID` reads the log itself. Page with \
            --after the last id shown.
            """
    )

    @OptionGroup var options: CommonOptions
    @Option(help: "Only this application's executions.") var application: String?
    @Option(help: "Only executions of the pipeline with this name.") var pipeline: String?
    @Option(help: "Only executions in this status (repeatable): \(ExecutionStatus.allCases.map(\.rawValue).joined(separator: ", ")).")
    var status: [String] = []
    @Option(help: "At most this many (1…1000).") var limit: Int = 20
    @Option(help: "Continue a listing after this execution id.") var after: String?
    @Flag(help: "Print JSON lines, one execution each.") var json = false

    func validate() throws {
        guard (1...1000).contains(limit) else { throw ValidationError("--limit must be 1…1000") }
        for value in status where ExecutionStatus(rawValue: value.uppercased()) == nil {
            throw ValidationError("unknown status '\(value)'; use one of \(ExecutionStatus.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() async throws {
        let database = try options.database()
        let logger = options.logger("topsail.executions")
        var filter = ExecutionReadModel.Filter(
            application: application, pipelineName: pipeline, statuses: status.compactMap { ExecutionStatus(rawValue: $0.uppercased()) }, limit: limit)
        filter.after = after
        let (query, json) = (filter, self.json)
        try await withDatabase(database, logger: logger) { client in
            let summaries = try await ExecutionReadModel(client: client, logger: logger).list(query)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                encoder.dateEncodingStrategy = .iso8601
                for summary in summaries {
                    Output.line(String(decoding: try encoder.encode(ExecutionSummaryView(summary)), as: UTF8.self))
                }
                return
            }
            if summaries.isEmpty {
                Output.line("no executions match")
                return
            }
            for summary in summaries {
                let duration = summary.startedAt.map { start in
                    String(format: "%.1fs", (summary.completedAt ?? Date()).timeIntervalSince(start))
                } ?? "-"
                Output.line([
                    summary.id, summary.status.rawValue, "\(summary.application ?? "-")/\(summary.pipelineName ?? "-")",
                    summary.triggeredAt.formatted(Date.ISO8601FormatStyle()), duration,
                ].joined(separator: "\t"))
            }
        }
    }
}

struct ProjectionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "projections",
        abstract: "Look at and rebuild the read models.",
        subcommands: [ProjectionStatusCommand.self, RebuildProjectionsCommand.self]
    )
}

struct ProjectionStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "How far the executions read model is behind the log.")
    @OptionGroup var options: CommonOptions

    func run() async throws {
        let database = try options.database()
        let logger = options.logger("topsail.projections")
        try await withDatabase(database, logger: logger) { client in
            let lag = try await ExecutionProjector(client: client, logger: logger).lag()
            let counts = try await ExecutionReadModel(client: client, logger: logger).countByStatus()
            Output.line("executions: \(lag) events behind the log")
            for (status, count) in counts.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
                Output.line("  \(status.rawValue)\t\(count)")
            }
        }
    }
}

struct RebuildProjectionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rebuild",
        abstract: "Empty the executions read model and rebuild it from the log.",
        discussion: """
            Resets the projection and replays the whole log into it here, printing progress. A \
            projector role that runs meanwhile notices the reset and helps (one writes at a time).
            """
    )
    @OptionGroup var options: CommonOptions

    func run() async throws {
        let database = try options.database()
        let logger = options.logger("topsail.projections")
        try await withDatabase(database, logger: logger) { client in
            try await ExecutionProjector.reset(client: client, logger: logger)
            progress("executions read model emptied; replaying the log", from: "projections")
            let clock = ContinuousClock()
            let began = clock.now
            let projector = ExecutionProjector(client: client, logger: logger, batchSize: ExecutionProjector.rebuildBatchSize)
            let count = try await projector.catchUp { total in
                if total % 10_000 < 500 { progress("\(total) events replayed", from: "projections") }
            }
            let counts = try await ExecutionReadModel(client: client, logger: logger).countByStatus()
            Output.line("rebuilt the executions read model: \(count) events, \(counts.values.reduce(0, +)) executions in \(clock.now - began)")
        }
    }
}
