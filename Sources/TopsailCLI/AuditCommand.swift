import Access
import ArgumentParser
import CLISupport
import EventLog
import Foundation
import PipelineEngine

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Who did what: events filtered by actor, application, type and time, as JSON lines.",
        discussion: """
            Prints one JSON object per event (position, stream, type, time, actor, source, correlation \
            and causation ids, data) in log order — a file of them is an export. Without \
            --include-system only what people and programs did is shown, not the engine's own steps. \
            Pages through everything that matches; --limit stops earlier.
            """
    )

    @OptionGroup var options: CommonOptions
    @OptionGroup var api: APIClientOptions
    @Option(help: "Only events by this actor.") var actor: String?
    @Option(help: "Only events of this application's executions, pipelines and application.") var application: String?
    @Option(help: "Only this event type, or a prefix ending in '*' (execution.*).") var type: String?
    @Option(help: "From this time on (ISO 8601, e.g. 2026-11-27T10:00:00Z).") var since: String?
    @Option(help: "Before this time (ISO 8601).") var until: String?
    @Option(help: "At most this many events.") var limit: Int?
    @Flag(help: "Include the engine's own events (orchestrator, worker, scheduler).") var includeSystem = false

    func validate() throws {
        for (name, value) in [("--since", since), ("--until", until)] {
            if let value, ISO8601DateFormatter().date(from: value) == nil {
                throw ValidationError("\(name) must be an ISO 8601 time such as 2026-11-27T10:00:00Z")
            }
        }
        if let limit, limit < 1 { throw ValidationError("--limit must be positive") }
    }

    func run() async throws {
        if let api = try api.remote() { return try await runRemote(api) }
        let database = try options.database()
        let logger = options.logger("topsail.audit")
        var filter = AuditLog.Filter()
        filter.actor = actor
        filter.application = application
        filter.type = type
        filter.since = since.flatMap { ISO8601DateFormatter().date(from: $0) }
        filter.until = until.flatMap { ISO8601DateFormatter().date(from: $0) }
        filter.includeSystem = includeSystem
        let (start, total) = (filter, limit)
        try await withDatabase(database, logger: logger) { client in
            let audit = AuditLog(client: client, logger: logger)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            encoder.dateEncodingStrategy = .iso8601
            var filter = start
            var printed = 0
            while true {
                if let total { filter.limit = min(500, total - printed) }
                let page = try await audit.page(filter)
                for entry in page.entries { Output.line(String(decoding: try encoder.encode(entry), as: UTF8.self)) }
                printed += page.entries.count
                guard let next = page.next, total.map({ printed < $0 }) ?? true else { return }
                filter.after = next
            }
        }
    }

    /// The same pages through `GET /audit`, as the token's user may see them.
    private func runRemote(_ api: RemoteAPI) async throws {
        var query: [(String, String)] = [("includeSystem", includeSystem ? "true" : "false")]
        for (name, value) in [("actor", actor), ("application", application), ("type", type), ("since", since), ("until", until)] {
            if let value { query.append((name, value)) }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var (after, printed): (Int64, Int) = (0, 0)
        while true {
            let size = limit.map { min(500, $0 - printed) } ?? 500
            let parameters = query + [("after", String(after)), ("limit", String(size))]
            let page = try await api.call(.GET, "/audit?" + parameters.map { "\($0)=\(RemoteAPI.escape($1))" }.joined(separator: "&"))
            for event in page["events"]?.arrayValue ?? [] { Output.line(String(decoding: try encoder.encode(event), as: UTF8.self)) }
            printed += page["events"]?.arrayValue?.count ?? 0
            guard let next = page["next"]?.intValue, limit.map({ printed < $0 }) ?? true else { return }
            after = Int64(next)
        }
    }
}
